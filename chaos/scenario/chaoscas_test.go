package scenario

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

func op(client int, expected uint64, out casOut, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: casIn{Expected: expected}, Output: out, Call: call, Return: ret}
}

func TestCheckCAS(t *testing.T) {
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			op(0, 5, casOut{OK: true, Version: 6}, 0, 10),
			op(1, 5, casOut{Current: 6}, 20, 30),
			op(1, 6, casOut{OK: true, Version: 7}, 40, 50),
		}, porcupine.Ok},
		{"concurrent writers, one wins", []porcupine.Operation{
			op(0, 5, casOut{OK: true, Version: 6}, 0, 10),
			op(1, 5, casOut{Current: 6}, 5, 12),
		}, porcupine.Ok},
		{"an unknown outcome that took effect", []porcupine.Operation{
			op(0, 5, casOut{Unknown: true}, 0, math.MaxInt64),
			op(1, 6, casOut{OK: true, Version: 7}, 20, 30),
		}, porcupine.Ok},
		{"an unconditional apply between two compare-and-sets", []porcupine.Operation{
			op(0, 5, casOut{OK: true, Version: 6}, 0, 10),
			op(1, 0, casOut{OK: true, Version: 7}, 20, 30),
			op(0, 7, casOut{OK: true, Version: 8}, 40, 50),
		}, porcupine.Ok},
		{"an unconditional apply refused for its version", []porcupine.Operation{
			op(1, 0, casOut{Current: 5}, 20, 30),
		}, porcupine.Illegal},
		{"a reply naming a later writer's version", []porcupine.Operation{
			op(0, 5, casOut{OK: true, Version: 7}, 0, 10),
			op(1, 6, casOut{OK: true, Version: 7}, 5, 12),
		}, porcupine.Illegal},
		{"two writers won the same version", []porcupine.Operation{
			op(0, 5, casOut{OK: true, Version: 6}, 0, 10),
			op(1, 5, casOut{OK: true, Version: 6}, 5, 12),
		}, porcupine.Illegal},
		{"a refused write that took effect", []porcupine.Operation{
			op(0, 5, casOut{Current: 4}, 0, 10),
			op(1, 6, casOut{OK: true, Version: 7}, 20, 30),
		}, porcupine.Illegal},
		{"a write lost after it was acknowledged", []porcupine.Operation{
			op(0, 5, casOut{OK: true, Version: 6}, 0, 10),
			op(1, 5, casOut{OK: true, Version: 6}, 20, 30),
		}, porcupine.Illegal},
	}
	for _, c := range cases {
		if got := checkCAS(5, c.ops, 10*time.Second, ""); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestClassifyCAS(t *testing.T) {
	if out := classifyCAS(&hmv1.ApplySpecResponse{Version: 9}, nil); !out.OK || out.Version != 9 {
		t.Errorf("success: %+v", out)
	}
	refused := status.Error(codes.FailedPrecondition, "rejected: spec is at version 12, not the expected 11; fetch it again and retry")
	if out := classifyCAS(nil, refused); out.OK || out.Unknown || out.Current != 12 {
		t.Errorf("refusal: %+v", out)
	}
	for _, err := range []error{status.Error(codes.Unavailable, "no leader"), status.Error(codes.FailedPrecondition, "not the leader"), errors.New("eof")} {
		if out := classifyCAS(nil, err); !out.Unknown {
			t.Errorf("%v: %+v, want unknown", err, out)
		}
	}
}
