package sentinel

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// startRedis runs a redis-server on a free 127.0.0.1 port until the test
// ends and returns its address.
func startRedis(t *testing.T) Addr {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("redis-server on port %d:\n%s", port, log.String())
		}
	})
	a := Addr{"127.0.0.1", port}
	waitFor(t, 10*time.Second, "redis-server to listen on "+a.String(), func() bool {
		c, err := net.Dial("tcp", a.String())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return a
}

func freePort(t *testing.T) int { return labtest.FreePort(t) }

// directClient is a plain client of one redis-server.
func directClient(t *testing.T, a Addr) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: a.String(), Protocol: 2})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFailoverClient runs go-redis's Sentinel client against the server,
// with a real Redis master and replica behind it: it writes to the master
// the server names and, after the Source switches the master and Changed
// publishes +switch-master, to the new one.
func TestFailoverClient(t *testing.T) {
	labtest.RequireBin(t, "redis-server")
	tests := []struct {
		name     string
		password string // the password file's content
		user     string // SentinelUsername
		pass     string // SentinelPassword
	}{
		{name: "no authentication"},
		{name: "password", password: "s3cret\n", pass: "s3cret"},
		{name: "user and password", password: "harbor s3cret\n", user: "harbor", pass: "s3cret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a, b := startRedis(t), startRedis(t)
			ra, rb := directClient(t, a), directClient(t, b)
			if err := rb.ReplicaOf(ctx, a.Host, strconv.Itoa(a.Port)).Err(); err != nil {
				t.Fatalf("REPLICAOF on %v: %v", b, err)
			}
			src := &fakeSource{masters: []Master{{Name: "mymaster", Addr: a, Epoch: 1, Replicas: []Addr{b}}}}
			var cfg Config
			if tc.password != "" {
				cfg.PasswordFile = writeFile(t, "pw", tc.password)
			}
			s, addr := startServer(t, cfg, src, nil)

			fc := redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName:       "mymaster",
				SentinelAddrs:    []string{addr},
				SentinelUsername: tc.user,
				SentinelPassword: tc.pass,
				DialTimeout:      2 * time.Second,
			})
			defer fc.Close()
			if err := fc.Set(ctx, "k", "v1", 0).Err(); err != nil {
				t.Fatalf("SET through the failover client: %v", err)
			}
			if got, err := fc.Get(ctx, "k").Result(); got != "v1" || err != nil {
				t.Fatalf("GET through the failover client: %q, %v; want v1", got, err)
			}
			if got, err := ra.Get(ctx, "k").Result(); got != "v1" || err != nil {
				t.Fatalf("GET on the master %v: %q, %v; want v1", a, got, err)
			}

			// b becomes the master. a stays a master for now, so only the
			// +switch-master message can move the client's connection.
			if err := rb.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
				t.Fatalf("REPLICAOF NO ONE on %v: %v", b, err)
			}
			src.update("mymaster", func(m *Master) { m.Addr, m.Epoch, m.Replicas = b, 2, []Addr{a} })
			s.Changed()
			start := time.Now()
			moved := false
			for i := 0; !moved && time.Since(start) < 5*time.Second; i++ {
				v := "v" + strconv.Itoa(i)
				if err := fc.Set(ctx, "k2", v, 0).Err(); err != nil {
					t.Fatalf("SET after the switch: %v", err)
				}
				got, err := rb.Get(ctx, "k2").Result()
				moved = err == nil && got == v
				if !moved {
					time.Sleep(20 * time.Millisecond)
				}
			}
			if !moved {
				t.Fatalf("the client's writes did not reach the new master %v within 5s", b)
			}
			t.Logf("the client followed the switch in %v", time.Since(start))

			// a follows b, and the client keeps writing to b.
			if err := ra.ReplicaOf(ctx, b.Host, strconv.Itoa(b.Port)).Err(); err != nil {
				t.Fatalf("REPLICAOF on %v: %v", a, err)
			}
			if err := fc.Set(ctx, "k3", "after", 0).Err(); err != nil {
				t.Fatalf("SET after the demotion: %v", err)
			}
			if got, err := rb.Get(ctx, "k3").Result(); got != "after" || err != nil {
				t.Fatalf("GET on the new master %v: %q, %v; want after", b, got, err)
			}
		})
	}
}

// TestRedisCLI checks redis-cli's output, in RESP2 and RESP3, with and
// without authentication.
func TestRedisCLI(t *testing.T) {
	labtest.RequireBin(t, "redis-cli")
	src := fixture()
	_, open := startServer(t, Config{Announce: fixtureAnnounce}, src, nil)
	_, locked := startServer(t, Config{PasswordFile: writeFile(t, "pw", "harbor s3cret\n")}, src, nil)
	port := func(addr string) string {
		_, p, _ := net.SplitHostPort(addr)
		return p
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"master", []string{"-p", port(open), "SENTINEL", "get-master-addr-by-name", "mymaster"}, "127.0.0.1\n16379\n"},
		{"master in RESP3", []string{"-3", "-p", port(open), "SENTINEL", "get-master-addr-by-name", "mymaster"}, "127.0.0.1\n16379\n"},
		{"unknown master", []string{"-p", port(open), "SENTINEL", "get-master-addr-by-name", "nope"}, "\n"},
		{"error", []string{"-p", port(open), "SENTINEL", "master", "nope"}, "ERR No such master with that name\n\n"},
		{"ckquorum", []string{"-p", port(open), "SENTINEL", "ckquorum", "mymaster"}, "OK 3 usable Sentinels. Quorum and failover authorization can be reached\n"},
		{"no password", []string{"-p", port(locked), "SENTINEL", "get-master-addr-by-name", "mymaster"}, "NOAUTH Authentication required.\n\n"},
		{"user and password", []string{"-p", port(locked), "--user", "harbor", "--pass", "s3cret", "--no-auth-warning",
			"SENTINEL", "get-master-addr-by-name", "mymaster"}, "127.0.0.1\n16379\n"},
		{"user and password in RESP3", []string{"-3", "-p", port(locked), "--user", "harbor", "--pass", "s3cret", "--no-auth-warning",
			"SENTINEL", "get-master-addr-by-name", "mymaster"}, "127.0.0.1\n16379\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", "127.0.0.1"}, tc.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli %q: %v\n%s", tc.args, err, out)
			}
			if string(out) != tc.want {
				t.Errorf("redis-cli %q:\n got %q\nwant %q", tc.args, out, tc.want)
			}
		})
	}
}
