package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

type statusServer struct {
	hmv1.UnimplementedAdminServer
	resp *hmv1.StatusResponse
}

func (s *statusServer) Status(context.Context, *hmv1.StatusRequest) (*hmv1.StatusResponse, error) {
	return s.resp, nil
}

// status prints the answering node's timing warning on a line of its own,
// and nothing about timing without one.
func TestStatusPrintsTimingWarning(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &statusServer{resp: &hmv1.StatusResponse{Node: "n1", Leader: "n2", RaftState: "Follower", Profile: "fast"}}
	hmv1.RegisterAdminServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()
	run := func() string {
		t.Helper()
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{"--addr", lis.Addr().String(), "status"})
		if err := root.Execute(); err != nil {
			t.Fatalf("status: %v", err)
		}
		return out.String()
	}
	if got := run(); strings.Contains(got, "Timing") {
		t.Fatalf("status without a warning prints a timing line:\n%s", got)
	}
	const warning = "lease renewals are slow for the fast profile: ... Fix: a slower profile, `profile: lan` in the node config"
	fake.resp.TimingWarning = warning
	got := run()
	var line string
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "Timing") {
			line = l
		}
	}
	if !strings.Contains(line, "WARNING: "+warning) {
		t.Fatalf("status with a timing warning: no Timing line with it:\n%s", got)
	}
}
