// Command bench-durability measures what the redis-master role's
// durability mode costs (`make bench`, docs/bench-redis.md): write
// throughput and latency of a master whose agent promoted it with
// min_synced_replicas 0 and 1 (Redis's min-replicas-to-write), in the same
// run, alternating, on loopback: one master and one replica started as the
// lab starts them (stock settings plus what docs/redis.md asks), written to
// by go-redis. It prints one Markdown table with the ratios.
//
//	go run ./chaos/cmd/bench-durability --rounds 5
//
// With --bin (root: network namespaces) it also runs the lab's
// redis-crash-master (3 voters, lan) with min_synced_replicas 0 and 1 in
// the same run and prints the failover time and lost writes side by side:
// with 1, writes resume only once a replica follows the new master.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds per mode (alternating)")
	ops := flag.Int("ops", 100000, "pipelined RPUSHes per round")
	single := flag.Int("single", 20000, "single RPUSHes per round (latency)")
	bin := flag.String("bin", "", "harbormaster binary: also measure the failover in the lab (root)")
	trials := flag.Int("trials", 5, "--bin: redis-crash-master trials per setting")
	flag.Parse()
	if _, err := exec.LookPath("redis-server"); err != nil {
		fmt.Fprintln(os.Stderr, "bench-durability: redis-server missing: apt-get install redis-server")
		os.Exit(2)
	}
	if err := run(*rounds, *ops, *single); err != nil {
		fmt.Fprintln(os.Stderr, "bench-durability:", err)
		os.Exit(1)
	}
	if *bin != "" {
		if err := failover(*bin, *trials); err != nil {
			fmt.Fprintln(os.Stderr, "bench-durability:", err)
			os.Exit(1)
		}
	}
}

// failover runs redis-crash-master with min_synced_replicas 0 and 1.
func failover(bin string, trials int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("--bin: the lab needs root (network namespaces)")
	}
	type row struct {
		name string
		res  scenario.Result
	}
	var rows []row
	for _, n := range []int{0, 1} {
		o := scenario.Options{ClusterOptions: scenario.ClusterOptions{Bin: bin, Profile: "lan", LabName: "dur"}, Trials: trials}
		if n > 0 {
			o.RedisRole = fmt.Sprintf("min_synced_replicas: %d", n)
		}
		res, err := scenario.Run(context.Background(), "redis-crash-master", o)
		if err != nil {
			return fmt.Errorf("min_synced_replicas %d: %w", n, err)
		}
		rows = append(rows, row{fmt.Sprint(n), res})
	}
	fmt.Printf("\n# Durability mode: crash of the master's node (lab, 3 voters, lan, %d trials each)\n\n", trials)
	fmt.Println("| min_synced_replicas | failover p50 ms | p99 ms | lost acknowledged writes (max) | violations |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, r := range rows {
		f, lost := r.res.Figures["failover_ms"], 0.0
		if r.res.LostAckedWrites != nil {
			lost = r.res.LostAckedWrites.Max
		}
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %d |\n", r.name, f.P50, f.P99, lost, len(r.res.Violations))
	}
	if a, b := rows[0].res.Figures["failover_ms"], rows[1].res.Figures["failover_ms"]; a.P50 > 0 {
		fmt.Printf("\nratio 1/0: failover p50 %.2fx, p99 %.2fx\n", b.P50/a.P50, b.P99/a.P99)
	}
	return nil
}

type result struct{ opsPerSec, p50, p99 []float64 }

func run(rounds, ops, single int) error {
	dir, err := os.MkdirTemp("", "hm-bench-durability-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	master, err := start(dir, "m")
	if err != nil {
		return err
	}
	defer master.stop()
	replica, err := start(dir, "r")
	if err != nil {
		return err
	}
	defer replica.stop()
	ctx := context.Background()
	mc, err := redisctl.New(redisctl.Config{Address: master.addr})
	if err != nil {
		return err
	}
	defer mc.Close()
	rc, err := redisctl.New(redisctl.Config{Address: replica.addr})
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := mc.PromoteWith(ctx, "redis", 1, redisctl.PromoteOptions{}); err != nil {
		return err
	}
	if err := rc.Follow(ctx, master.addr); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rc.WaitCaughtUp(wctx, 0); err != nil {
		return err
	}
	cli := redis.NewClient(&redis.Options{Addr: master.addr, Protocol: 2})
	defer cli.Close()
	res := map[int]*result{0: {}, 1: {}}
	for i := 0; i < rounds; i++ {
		for _, n := range []int{0, 1} {
			if err := mc.PromoteWith(ctx, "redis", 1, redisctl.PromoteOptions{MinSyncedReplicas: n}); err != nil {
				return err
			}
			cli.Del(ctx, "bench")
			t0 := time.Now()
			for done := 0; done < ops; done += 100 {
				p := cli.Pipeline()
				for j := 0; j < 100; j++ {
					p.RPush(ctx, "bench", j)
				}
				if _, err := p.Exec(ctx); err != nil {
					return fmt.Errorf("min_synced_replicas %d: %w", n, err)
				}
			}
			res[n].opsPerSec = append(res[n].opsPerSec, float64(ops)/time.Since(t0).Seconds())
			lat := make([]float64, 0, single)
			for j := 0; j < single; j++ {
				s := time.Now()
				if err := cli.RPush(ctx, "bench", j).Err(); err != nil {
					return err
				}
				lat = append(lat, float64(time.Since(s).Microseconds()))
			}
			res[n].p50 = append(res[n].p50, pct(lat, 0.5))
			res[n].p99 = append(res[n].p99, pct(lat, 0.99))
		}
	}
	fmt.Printf("# Durability mode: write cost (loopback, 1 replica, %d rounds, alternating)\n\n", rounds)
	fmt.Println("| min_synced_replicas | pipelined RPUSH/s (median) | single RPUSH p50 µs | p99 µs |")
	fmt.Println("| --- | --- | --- | --- |")
	for _, n := range []int{0, 1} {
		r := res[n]
		fmt.Printf("| %d | %.0f | %.0f | %.0f |\n", n, pct(r.opsPerSec, 0.5), pct(r.p50, 0.5), pct(r.p99, 0.5))
	}
	fmt.Printf("\nratio 1/0: throughput %.2fx, p50 %.2fx, p99 %.2fx\n", pct(res[1].opsPerSec, 0.5)/pct(res[0].opsPerSec, 0.5),
		pct(res[1].p50, 0.5)/pct(res[0].p50, 0.5), pct(res[1].p99, 0.5)/pct(res[0].p99, 0.5))
	return nil
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[max(int(float64(len(s))*p+0.999999)-1, 0)]
}

type server struct {
	addr string
	cmd  *exec.Cmd
}

func (s *server) stop() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() }

// start runs a redis-server on a free loopback port as docs/redis.md asks:
// stock settings, started fenced, no persistence.
func start(dir, name string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d := dir + "/" + name
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", d, "--min-replicas-to-write", "1073741824")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not start", s.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
