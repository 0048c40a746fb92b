package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// stateDir holds one JSON file per running `up`, so that status and down
// find it.
const stateDir = "/run/harbormaster-lab"

// upState describes a running `up` lab.
type upState struct {
	PID      int         `json:"pid"`
	Prefix   string      `json:"prefix"`
	Bin      string      `json:"bin"`
	Dir      string      `json:"dir"`
	VIP      string      `json:"vip"`
	ClientNS string      `json:"client_ns"`
	Nodes    []upStateNd `json:"nodes"`
	// TLSDir holds the lab's CA and certificates ("" when insecure).
	TLSDir string `json:"tls_dir,omitempty"`
}

type upStateNd struct {
	Name string `json:"name"`
	NS   string `json:"ns"`
	IP   string `json:"ip"`
	API  string `json:"api"`
	MAC  string `json:"mac"`
	Log  string `json:"log"`
}

func upCmd() *cobra.Command {
	var cf clusterFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build a lab with the 3-node cluster running, print how to reach it, stay up until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := needRoot(); err != nil {
				return err
			}
			co, err := cf.options("up")
			if err != nil {
				return err
			}
			if _, err := lab.Sweep(); err != nil {
				fmt.Fprintln(os.Stderr, "harbormaster-lab: sweeping stale labs:", err)
			}
			ctx := cmd.Context()
			c, err := scenario.StartCluster(ctx, co)
			if err != nil {
				return err
			}
			defer func() {
				fmt.Println("tearing the lab down")
				err = errors.Join(err, c.Close())
			}()
			st := stateOf(c, co.Bin)
			path := filepath.Join(stateDir, st.Prefix+".json")
			if err := writeState(path, st); err != nil {
				return err
			}
			defer os.Remove(path)
			fmt.Printf("lab %s starting (work dir %s) ...\n", st.Prefix, c.Dir())
			v, err := c.WaitStable(ctx, time.Second, 60*time.Second)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("cluster not stable: %w (logs in %s)", err, c.Dir())
			}
			printReach(st, v, cf.dir == "")
			watch(ctx, c)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func stateOf(c *scenario.Cluster, bin string) upState {
	cl, _ := c.Lab.Host("c1")
	st := upState{PID: os.Getpid(), Prefix: c.Lab.Prefix(), Bin: bin, Dir: c.Dir(), VIP: scenario.VIP.String(), ClientNS: cl.NS}
	if !c.Insecure() {
		st.TLSDir = c.TLSDir()
	}
	for _, n := range c.Nodes() {
		st.Nodes = append(st.Nodes, upStateNd{Name: n.Name, NS: n.NS, IP: n.IP.String(),
			API: netip.AddrPortFrom(n.IP, 7201).String(), MAC: n.MAC.String(), Log: c.LogPath(n.Name)})
	}
	return st
}

func writeState(path string, st upState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func printReach(st upState, v scenario.View, tmp bool) {
	t := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "NODE\tNAMESPACE\tADDRESS\tMAC\tAPI\tLOG")
	for _, n := range st.Nodes {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.NS, n.IP, n.MAC, n.API, n.Log)
	}
	fmt.Fprintf(t, "c1\t%s\t198.18.0.101\t\t\t\n", st.ClientNS)
	t.Flush()
	fmt.Printf("\nVIP %s held by %s (epoch %d); Raft leader %s.\n", st.VIP, v.Holder, v.Epoch, v.Leader)
	vip := strings.Split(st.VIP, "/")[0]
	bin := st.Bin
	if st.TLSDir != "" {
		f := tlsid.FilesIn(st.TLSDir, string(tlsid.RoleAdmin))
		fmt.Printf("\nThe agents run mutual TLS (lab CA in %s).\n", st.TLSDir)
		bin += fmt.Sprintf(" --ca-file %s --cert-file %s --key-file %s", f.CA, f.Cert, f.Key)
	} else {
		fmt.Printf("\nThe agents run with insecure: true (no TLS, no authentication).\n")
	}
	fmt.Printf(`
Reach it from the client namespace:
  ip netns exec %[1]s %[2]s status --addr %[3]s
  ip netns exec %[1]s %[2]s roles --addr %[3]s
  ip netns exec %[1]s %[4]s probe --target %[5]s:80      # who answers through the VIP
Faults by hand (the holder's agent, a node):
  ip netns pids %[6]s                                        # then kill -9 / kill -STOP the agent
  ip netns exec %[6]s nft list ruleset
Every node answers on port 80 with its name. Holder changes are printed below.
Ctrl-C (or harbormaster-lab down) tears the lab down%[7]s.
`, st.ClientNS, bin, st.Nodes[0].API, selfPath(), vip, st.Nodes[0].NS, map[bool]string{true: " and removes the work dir", false: ""}[tmp])
}

func selfPath() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "harbormaster-lab"
}

// watch prints every change of the VIP's holders (kernel, 10 ms) and of the
// node answering the client, until ctx ends.
func watch(ctx context.Context, c *scenario.Cluster) {
	var holders []string
	node := ""
	var down time.Time
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if hs := c.Holders(); !slices.Equal(hs, holders) {
			fmt.Printf("%s  kernel holders of the VIP: %v\n", time.Now().Format("15:04:05.000"), hs)
			holders = hs
		}
		a, ok := c.Prober.LastSuccess()
		switch {
		case ok && time.Since(a.Start) < 60*time.Millisecond && a.Node != node:
			msg := ""
			if !down.IsZero() {
				msg = fmt.Sprintf(" (no answer for %s)", a.Start.Sub(down).Round(time.Millisecond))
			}
			fmt.Printf("%s  client reaches %s through the VIP%s\n", a.Start.Format("15:04:05.000"), a.Node, msg)
			node, down = a.Node, time.Time{}
		case ok && time.Since(a.Start) >= 60*time.Millisecond && node != "":
			fmt.Printf("%s  client gets no answer through the VIP\n", a.Start.Format("15:04:05.000"))
			node, down = "", a.Start
		}
	}
}

// readStates returns the state files of `up` runs, live or not.
func readStates() ([]upState, []string) {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return nil, nil
	}
	var out []upState
	var paths []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(stateDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var st upState
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		out = append(out, st)
		paths = append(paths, p)
	}
	return out, paths
}

// isUpProcess reports whether pid is alive and is a harbormaster-lab up.
func isUpProcess(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return len(args) > 1 && strings.HasSuffix(args[0], "harbormaster-lab") && slices.Contains(args[1:], "up")
}

func downCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop running `harbormaster-lab up` labs (SIGTERM) and sweep stale labs of dead processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			states, paths := readStates()
			for i, st := range states {
				if !isUpProcess(st.PID) {
					_ = os.Remove(paths[i])
					continue
				}
				fmt.Printf("stopping harbormaster-lab up (pid %d, lab %s)\n", st.PID, st.Prefix)
				if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
					return fmt.Errorf("signal pid %d: %w", st.PID, err)
				}
				deadline := time.Now().Add(15 * time.Second)
				for isUpProcess(st.PID) && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if isUpProcess(st.PID) {
					return fmt.Errorf("pid %d did not stop within 15 s", st.PID)
				}
			}
			removed, err := lab.Sweep()
			for _, n := range removed {
				fmt.Println("removed stale namespace", n)
			}
			if len(removed) == 0 {
				fmt.Println("no stale lab namespaces")
			}
			return err
		},
	}
}

// labInfo groups the lab namespaces of one lab.
type labInfo struct {
	prefix string
	pid    int
	alive  bool
	ns     []string
}

// listLabs groups the namespaces under /run/netns by lab prefix.
func listLabs() ([]labInfo, error) {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byPrefix := map[string]*labInfo{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "hmlab-") {
			continue
		}
		i := strings.LastIndex(name, "-")
		prefix := name[:i]
		li, ok := byPrefix[prefix]
		if !ok {
			f := strings.Split(name, "-")
			pid, _ := strconv.Atoi(f[1])
			li = &labInfo{prefix: prefix, pid: pid, alive: pid > 0 && syscall.Kill(pid, 0) == nil}
			byPrefix[prefix] = li
		}
		li.ns = append(li.ns, name[i+1:])
	}
	var out []labInfo
	for _, li := range byPrefix {
		sort.Strings(li.ns)
		out = append(out, *li)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].prefix < out[j].prefix })
	return out, nil
}

func statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "List the labs on this machine and, for running `up` labs, who holds the VIP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			labs, err := listLabs()
			if err != nil {
				return err
			}
			if len(labs) == 0 {
				fmt.Println("no lab namespaces")
			}
			states, _ := readStates()
			for _, li := range labs {
				state := "stale (owner gone; harbormaster-lab down removes it)"
				if li.alive {
					state = fmt.Sprintf("owned by live pid %d", li.pid)
				}
				fmt.Printf("%s: %s; hosts %s\n", li.prefix, state, strings.Join(li.ns, " "))
				for _, st := range states {
					if st.Prefix == li.prefix && li.alive {
						printUpStatus(cmd.Context(), st)
					}
				}
			}
			return nil
		},
	}
}

// printUpStatus asks every node of an `up` lab for its status and roles,
// from the lab's client namespace.
func printUpStatus(ctx context.Context, st upState) {
	t := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "  NODE\tAPI\tSTATE\tLEADER\tREADY\tVIP HOLDER")
	for _, n := range st.Nodes {
		s, roles, err := queryNode(ctx, st.ClientNS, st.TLSDir, n.API)
		if err != nil {
			fmt.Fprintf(t, "  %s\t%s\tunreachable: %v\t\t\t\n", n.Name, n.API, err)
			continue
		}
		holder := "-"
		for _, r := range roles.Roles {
			if r.Name == scenario.VIPRole && r.Holder != "" {
				holder = fmt.Sprintf("%s (epoch %d)", r.Holder, r.Epoch)
			}
		}
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.API, s.RaftState, s.Leader, yesno(s.Ready), holder)
	}
	t.Flush()
}

func queryNode(ctx context.Context, clientNS, tlsDir, addr string) (*hmv1.StatusResponse, *hmv1.ListRolesResponse, error) {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		var conn net.Conn
		err = lab.InLabNamespace(clientNS, func() error {
			if err := lab.GuardHere(ap.Addr()); err != nil {
				return err
			}
			var d net.Dialer
			conn, err = d.DialContext(ctx, "tcp4", addr)
			return err
		})
		return conn, err
	}
	creds := insecure.NewCredentials()
	if tlsDir != "" {
		ts, err := tlsid.Load(tlsid.FilesIn(tlsDir, string(tlsid.RoleRead)), nil)
		if err != nil {
			return nil, nil, err
		}
		creds = credentials.NewTLS(ts.ClientConfig(tlsid.AnyNode))
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithContextDialer(dial))
	if err != nil {
		return nil, nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := hmv1.NewAdminClient(cc)
	s, err := c.Status(ctx, &hmv1.StatusRequest{})
	if err != nil {
		return nil, nil, err
	}
	r, err := c.ListRoles(ctx, &hmv1.ListRolesRequest{})
	if err != nil {
		return nil, nil, err
	}
	return s, r, nil
}
