package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// eventsServer ends its first stream after two events (as an agent that
// stops), then serves the rest from where the client says it stopped.
type eventsServer struct {
	hmv1.UnimplementedAdminServer
	mu     sync.Mutex
	calls  int
	sinces []uint64
}

func (s *eventsServer) WatchEvents(req *hmv1.WatchEventsRequest, stream hmv1.Admin_WatchEventsServer) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.sinces = append(s.sinces, req.Since)
	s.mu.Unlock()
	send := func(seq uint64) error {
		return stream.Send(&hmv1.Event{Seq: seq, Kind: "operator", TimeUnixMs: 1, Message: "e"})
	}
	if call == 1 {
		for seq := req.Since + 1; seq <= 2; seq++ {
			if err := send(seq); err != nil {
				return err
			}
		}
		return status.Error(codes.Unavailable, "the agent is shutting down")
	}
	if err := send(req.Since + 1); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func TestEventsFollowReconnects(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &eventsServer{}
	hmv1.RegisterAdminServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRoot()
	out := &syncBuf{}
	root.SetOut(out)
	root.SetArgs([]string{"--addr", lis.Addr().String(), "events", "--follow"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "#3") {
		if time.Now().After(deadline) {
			t.Fatalf("no third event after the reconnect; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("events --follow ended with %v after an interrupt, want nil", err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.sinces) != 2 || fake.sinces[0] != 0 || fake.sinces[1] != 2 {
		t.Fatalf("streams asked from %v, want [0 2]: the reconnect goes on after the last event printed", fake.sinces)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Fatalf("%d lines printed, want 3 (no event twice):\n%s", n, out.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
