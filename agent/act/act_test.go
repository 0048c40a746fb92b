package act

import (
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
)

func TestMayAct(t *testing.T) {
	now := time.Now()
	ok := Authority{Node: "n1", LeaseGen: 7, LeaseValid: true, LeaseUntil: now.Add(400 * time.Millisecond), Now: now}
	held := fsm.Assignment{Role: "vip", Holder: "n1", HolderGen: 7, Epoch: 3}
	tests := []struct {
		name  string
		auth  func(Authority) Authority
		as    func(fsm.Assignment) fsm.Assignment
		ahead time.Duration
		want  bool
	}{
		{name: "holder at its generation with a valid lease", want: true},
		{name: "another node holds it", as: func(a fsm.Assignment) fsm.Assignment { a.Holder = "n2"; return a }},
		{name: "nobody holds it", as: func(a fsm.Assignment) fsm.Assignment { a.Holder = ""; return a },
			auth: func(a Authority) Authority { a.Node = ""; return a }},
		{name: "assigned under an older generation", as: func(a fsm.Assignment) fsm.Assignment { a.HolderGen = 6; return a }},
		{name: "lease not valid", auth: func(a Authority) Authority { a.LeaseValid = false; return a }},
		{name: "lease ended", auth: func(a Authority) Authority { a.LeaseUntil = now.Add(-time.Millisecond); return a }},
		{name: "less than the margin left", ahead: 400 * time.Millisecond},
		{name: "just more than the margin left", ahead: 399 * time.Millisecond, want: true},
		{name: "being released", as: func(a fsm.Assignment) fsm.Assignment { a.Releasing = true; return a }},
		{name: "agent stopping", auth: func(a Authority) Authority { a.Stopping = true; return a }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			auth, as := ok, held
			if tc.auth != nil {
				auth = tc.auth(auth)
			}
			if tc.as != nil {
				as = tc.as(as)
			}
			if got := auth.MayAct(as, tc.ahead); got != tc.want {
				t.Fatalf("MayAct(%+v, %s) with %+v = %v, want %v", as, tc.ahead, auth, got, tc.want)
			}
		})
	}
}

func TestLeft(t *testing.T) {
	now := time.Now()
	a := Authority{LeaseValid: true, LeaseUntil: now.Add(300 * time.Millisecond), Now: now}
	if got := a.Left(50 * time.Millisecond); got != 250*time.Millisecond {
		t.Fatalf("Left(50ms) = %s, want 250ms", got)
	}
	a.LeaseValid = false
	if got := a.Left(0); got != 0 {
		t.Fatalf("Left of an invalid lease = %s, want 0", got)
	}
}
