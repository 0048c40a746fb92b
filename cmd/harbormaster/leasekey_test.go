package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

type rotateServer struct {
	hmv1.UnimplementedAdminServer
	actor string
}

func (s *rotateServer) RotateLeaseKey(_ context.Context, req *hmv1.RotateLeaseKeyRequest) (*hmv1.RotateLeaseKeyResponse, error) {
	s.actor = req.Actor
	return &hmv1.RotateLeaseKeyResponse{KeyId: 4, PreviousKeyId: 3, Index: 99}, nil
}

func TestRotateLeaseKeyCmd(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &rotateServer{}
	hmv1.RegisterAdminServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()
	run := func(args ...string) string {
		t.Helper()
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"--addr", lis.Addr().String()}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	if got := run("tls", "rotate-lease-key"); got != "lease key 4 in use; key 3 accepted until the next rotation\n" {
		t.Fatalf("output %q", got)
	}
	if fake.actor == "" {
		t.Error("no actor sent")
	}
	got := run("--json", "tls", "rotate-lease-key")
	if !strings.Contains(got, `"key_id": 4`) || !strings.Contains(got, `"previous_key_id": 3`) {
		t.Fatalf("--json output %q", got)
	}
}

// The tls group is shared: a group registered by another file is reused,
// not duplicated.
func TestAddTLSCommandsReusesTheGroup(t *testing.T) {
	root := &cobra.Command{Use: "harbormaster"}
	existing := &cobra.Command{Use: "tls"}
	existing.AddCommand(&cobra.Command{Use: "ca"})
	root.AddCommand(existing)
	addTLSCommands(root, &cobra.Command{Use: "rotate-lease-key"})
	if n := len(root.Commands()); n != 1 {
		t.Fatalf("root has %d commands, want the one tls group", n)
	}
	if n := len(existing.Commands()); n != 2 {
		t.Fatalf("tls group has %d commands, want ca and rotate-lease-key", n)
	}
}
