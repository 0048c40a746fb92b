package redisact

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/act/acttest"
	"github.com/harbormaster/harbormaster/agent/redisctl"
)

// A lost master whose node does not answer a connect (crashed) costs the
// promotion demoteReach, not the whole demote bound; one whose node
// answers but whose Redis is slow (alive, its agent killed: it may still
// take writes) gets the whole bound to be demoted.
func TestDemoteRemoteWaitsLongOnlyForANodeThatAnswers(t *testing.T) {
	x, err := New(acttest.New("n1"), Config{Redis: redisctl.Config{Address: "127.0.0.1:1"}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Crashed: the connect never completes.
	x.reach = func(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() }
	began := time.Now()
	x.demoteRemote(context.Background(), "127.0.0.1:1") // reach stands in for a node that is gone
	if took := time.Since(began); took < demoteReach || took >= demoteBound {
		t.Fatalf("a node that does not answer held the demotion %v, want [%v, %v)", took, demoteReach, demoteBound)
	}
	// Alive and slow: the kernel accepts, Redis never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	x.reach = nil // tcpReach
	began = time.Now()
	x.demoteRemote(context.Background(), l.Addr().String())
	if took := time.Since(began); took < demoteBound {
		t.Fatalf("a node that answers, with a Redis that does not, was given up on after %v, want the whole %v", took, demoteBound)
	}
}
