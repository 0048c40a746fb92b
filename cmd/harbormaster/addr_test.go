package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

func TestLocalAPIAddr(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ doc, want string }{
		{"node_id: n1\napi_addr: 10.0.10.11:7201\n", "10.0.10.11:7201"},
		{"api_addr: 0.0.0.0:7300\n", "127.0.0.1:7300"},
		{"api_addr: '[::]:7300'\n", "[::1]:7300"},
		{"api_addr: :7301\n", "127.0.0.1:7301"},
	} {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := localAPIAddr(p); err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.doc, got, err, tc.want)
		}
	}
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte("api_addr: nowhere\n"), 0o600)
	if _, err := localAPIAddr(p); err == nil || !strings.Contains(err.Error(), "api_addr") {
		t.Errorf("bad api_addr: %v", err)
	}
}

func TestAddrs(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "harbormaster.yaml")
	os.WriteFile(cfg, []byte("api_addr: 10.0.10.12:7201\n"), 0o600)
	t.Setenv("HARBORMASTER_CONFIG", cfg)
	g := &globals{}
	if got, err := g.addrs(); err != nil || strings.Join(got, ",") != "10.0.10.12:7201" {
		t.Fatalf("from HARBORMASTER_CONFIG: %v, %v", got, err)
	}
	g.addr = "a:1, b:2"
	if got, err := g.addrs(); err != nil || strings.Join(got, ",") != "a:1,b:2" {
		t.Fatalf("--addr a:1, b:2: %v, %v", got, err)
	}
	for _, bad := range []string{"nonsense", "a:1,10.0.0.1"} {
		g.addr = bad
		if _, err := g.addrs(); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "host:port") {
			t.Errorf("--addr %q: %v, want a usage error naming host:port", bad, err)
		}
	}
	g.addr = ""
	t.Setenv("HARBORMASTER_CONFIG", filepath.Join(dir, "missing.yaml"))
	if _, err := g.addrs(); err == nil || exitCode(err) != exitUsage {
		t.Fatalf("HARBORMASTER_CONFIG naming a missing file: %v, want a usage error", err)
	}
}

type rolesServer struct{ hmv1.UnimplementedAdminServer }

func (rolesServer) ListRoles(context.Context, *hmv1.ListRolesRequest) (*hmv1.ListRolesResponse, error) {
	return &hmv1.ListRolesResponse{Node: "n2", Roles: []*hmv1.Role{{Name: "web", Type: "service", Holder: "n2", InSpec: true}}}, nil
}

// TestAddrsTriedInOrder: an address nobody listens on passes to the next.
func TestAddrsTriedInOrder(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hmv1.RegisterAdminServer(srv, rolesServer{})
	go srv.Serve(lis)
	defer srv.Stop()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--addr", deadAddr + "," + lis.Addr().String(), "roles"})
	if code := exitCode(root.Execute()); code != 0 || !strings.Contains(out.String(), "web") {
		t.Fatalf("exit %d, %q; want the second address's roles", code, out.String())
	}
	root = newRoot()
	root.SetArgs([]string{"nosuchcommand"})
	if code := exitCode(root.Execute()); code != exitUsage {
		t.Fatalf("unknown command: exit %d, want %d", code, exitUsage)
	}
}
