package scenario

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The spec's compare-and-set (ApplySpec with expected_version), driven by
// a few clients through random nodes during a chaos run and checked for
// linearizability with porcupine: a history in which two writers both won
// one version, or a write reported failed that took effect, is illegal.

// casIn is a compare-and-set: apply the spec if it is at Expected. Expected
// 0 is an unconditional apply (expected_version unset): what a client does
// after reading version 0 from a node that has no spec yet (its data dir was
// wiped and it has not caught up).
type casIn struct{ Expected uint64 }

// casOut is what the client was told: OK with the new version, a refusal
// naming the current version (Current), or nothing certain (Unknown: a
// timeout, no leader, a lost connection; the write may or may not have
// taken effect).
type casOut struct {
	OK      bool
	Version uint64
	Current uint64
	Unknown bool
}

// casModel is the spec version as a compare-and-set register.
var casModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{uint64(0)} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(uint64), input.(casIn), output.(casOut)
		applies := in.Expected == 0 || s == in.Expected
		switch {
		case out.Unknown:
			if applies {
				return []any{s, s + 1}
			}
			return []any{s}
		case out.OK:
			if applies && out.Version == s+1 {
				return []any{s + 1}
			}
			return nil
		default:
			if !applies && out.Current == s {
				return []any{s}
			}
			return nil
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(casIn), output.(casOut)
		switch {
		case out.Unknown:
			return fmt.Sprintf("cas(%d) -> ?", in.Expected)
		case out.OK:
			return fmt.Sprintf("cas(%d) -> ok %d", in.Expected, out.Version)
		}
		return fmt.Sprintf("cas(%d) -> refused, at %d", in.Expected, out.Current)
	},
}

// checkCAS checks a history that started at version init. With a
// non-empty path, an illegal history is drawn there (porcupine's HTML
// visualization: the longest linearizable prefix and where it fails).
func checkCAS(init uint64, ops []porcupine.Operation, timeout time.Duration, path string) porcupine.CheckResult {
	m := casModel
	m.Init = func() []any { return []any{init} }
	res, info := porcupine.CheckOperationsVerbose(m.ToModel(), ops, timeout)
	if res == porcupine.Illegal && path != "" {
		_ = porcupine.VisualizePath(m.ToModel(), info, path)
	}
	return res
}

var refusedAt = regexp.MustCompile(`spec is at version (\d+), not the expected (\d+)`)

// classifyCAS turns an ApplySpec answer into a casOut.
func classifyCAS(resp *hmv1.ApplySpecResponse, err error) casOut {
	if err == nil {
		return casOut{OK: true, Version: resp.Version}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		if m := refusedAt.FindStringSubmatch(st.Message()); m != nil {
			cur, _ := strconv.ParseUint(m[1], 10, 64)
			return casOut{Current: cur}
		}
	}
	return casOut{Unknown: true}
}

// casClients runs n clients until ctx ends, each reading the spec's
// version from a random running node and then applying the same document
// with that expected version through another random node.
type casClients struct {
	c   *Cluster
	doc string

	mu  sync.Mutex
	ops []porcupine.Operation
}

func (k *casClients) run(ctx context.Context, n int, seed int64) {
	var wg sync.WaitGroup
	t0 := time.Now()
	for id := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(seed), uint64(id)))
			nodes := k.c.Nodes()
			for ctx.Err() == nil {
				via := nodes[r.IntN(len(nodes))].Name
				rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
				got, err := hmv1.NewAdminClient(k.c.conns[via]).GetSpec(rctx, &hmv1.GetSpecRequest{})
				cancel()
				if err == nil {
					via = nodes[r.IntN(len(nodes))].Name
					call := time.Since(t0)
					actx, cancel := context.WithTimeout(ctx, 2*time.Second)
					resp, err := hmv1.NewAdminClient(k.c.conns[via]).ApplySpec(actx, &hmv1.ApplySpecRequest{Document: k.doc, ExpectedVersion: got.Version, Actor: "chaos/cas"})
					cancel()
					out := classifyCAS(resp, err)
					ret := time.Since(t0)
					if out.Unknown {
						ret = math.MaxInt64
					}
					if ctx.Err() == nil || !out.Unknown {
						k.mu.Lock()
						k.ops = append(k.ops, porcupine.Operation{ClientId: id, Input: casIn{Expected: got.Version}, Output: out, Call: int64(call), Return: int64(ret)})
						k.mu.Unlock()
					}
				}
				if Sleep(ctx, time.Duration(100+r.IntN(200))*time.Millisecond) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// history returns the operations and how many succeeded and stayed
// unknown.
func (k *casClients) history() (ops []porcupine.Operation, ok, unknown int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, op := range k.ops {
		out := op.Output.(casOut)
		if out.OK {
			ok++
		}
		if out.Unknown {
			unknown++
		}
	}
	return append([]porcupine.Operation(nil), k.ops...), ok, unknown
}
