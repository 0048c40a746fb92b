// Command labguard-demo builds a lab, shows its topology and the guard at
// work, and tears the lab down on exit, SIGINT or SIGTERM.
//
//	go build -o bin/labguard-demo ./chaos/cmd/labguard-demo
//	sudo bin/labguard-demo -hold 0   # until Ctrl-C
//
// It first sweeps labs left by dead processes, then runs GuardHere in its own
// (root) namespace, which must refuse, and runs itself with -guard inside
// node n1, where the guard must pass. With -guard ADDR it only runs the
// guard in the current namespace against ADDR and exits 0 or 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

func main() {
	nodes := flag.Int("nodes", 3, "number of nodes")
	clients := flag.Int("clients", 1, "number of clients")
	hold := flag.Duration("hold", 0, "keep the lab this long (0: until SIGINT/SIGTERM)")
	guard := flag.String("guard", "", "only run the guard here against this target address")
	flag.Parse()

	if *guard != "" {
		os.Exit(runGuard(*guard))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *nodes, *clients, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "labguard-demo:", err)
		os.Exit(1)
	}
}

func runGuard(target string) int {
	addr, err := netip.ParseAddr(target)
	if err == nil {
		err = lab.GuardHere(addr)
	}
	if err != nil {
		fmt.Println("guard refused:", err)
		return 1
	}
	fmt.Println("guard passed: only loopback and lab addresses here, target", addr, "in the lab range")
	return 0
}

func run(ctx context.Context, nodes, clients int, hold time.Duration) (err error) {
	if removed, err := lab.Sweep(); err != nil {
		return err
	} else if len(removed) > 0 {
		fmt.Println("swept stale namespaces:", removed)
	}
	l, err := lab.New(ctx, lab.Options{Nodes: nodes, Clients: clients, Name: "demo"})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l.Close()) }()

	fmt.Printf("lab %s, switch namespace %s\n", l.Prefix(), l.SwitchNS())
	for _, n := range l.Hosts() {
		fmt.Printf("  %-3s %-22s %-15s %s\n", n.Name, n.NS, n.IP, n.MAC)
	}
	n1, peer := l.Nodes()[0], l.Nodes()[len(l.Nodes())-1]
	fmt.Print("here (root namespace): ")
	if err := lab.GuardHere(peer.IP); err == nil {
		return errors.New("guard passed in the root namespace")
	} else {
		fmt.Println("guard refused:", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	fmt.Printf("inside %s: ", n1.Name)
	cmd := l.Command(ctx, n1.Name, self, "-guard", peer.IP.String())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("guard inside %s: %w", n1.Name, err)
	}

	if hold > 0 {
		fmt.Println("holding for", hold)
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
	} else {
		fmt.Println("holding until SIGINT or SIGTERM")
		<-ctx.Done()
	}
	fmt.Println("tearing down")
	return nil
}
