package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSetLeaseKeyRotation(t *testing.T) {
	st := NewState()
	if st.LeaseKeyByID(1) != nil {
		t.Fatal("a new state holds a lease key")
	}
	if _, err := Apply(st, 1, &SetLeaseKey{ID: 2, Secret: testLeaseKey(2)}); !isRejected(err) {
		t.Fatalf("first key with id 2: err %v, want a rejection (must be 1)", err)
	}
	st = mustApply(t, st, &SetLeaseKey{ID: 1, Secret: testLeaseKey(1), Actor: "n1", Time: t0})
	if st.LeaseKey.ID != 1 || st.PrevLeaseKey != nil || !bytes.Equal(st.LeaseKeyByID(1), testLeaseKey(1)) {
		t.Fatalf("after key 1: current %+v previous %+v", st.LeaseKey, st.PrevLeaseKey)
	}
	st = mustApply(t, st, &SetLeaseKey{ID: 2, Secret: testLeaseKey(2), Actor: "operator", Time: t0 + 1})
	if !bytes.Equal(st.LeaseKeyByID(2), testLeaseKey(2)) || !bytes.Equal(st.LeaseKeyByID(1), testLeaseKey(1)) {
		t.Fatal("after key 2: the current key or the previous one (the grace) is missing")
	}
	// A rotation decided on a stale view (two at once) applies only once.
	if _, err := Apply(st, st.Index+1, &SetLeaseKey{ID: 2, Secret: testLeaseKey(9)}); !isRejected(err) {
		t.Fatalf("a second key 2: err %v, want a rejection", err)
	}
	st = mustApply(t, st, &SetLeaseKey{ID: 3, Secret: testLeaseKey(3), Actor: "operator", Time: t0 + 2})
	if st.LeaseKeyByID(1) != nil {
		t.Fatal("key 1 still accepted two rotations later")
	}
	last := st.Events[len(st.Events)-1]
	if last.Kind != EventLeaseKey || last.Old != "2" || last.New != "3" || last.Actor != "operator" {
		t.Fatalf("rotation event: %+v", last)
	}
	// Neither the event nor any rejection carries the secret.
	for _, e := range st.Events {
		b, _ := json.Marshal(e)
		if bytes.Contains(b, []byte("AwMDAwMD")) { // base64 of testLeaseKey(3)
			t.Fatalf("event shows the key: %s", b)
		}
	}
	for field, bad := range map[string]*SetLeaseKey{"id": {ID: 0, Secret: testLeaseKey(1)}, "secret": {ID: 1, Secret: testLeaseKey(1)[:16]}} {
		if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("%+v: Validate = %v, want an error naming %s", bad, err, field)
		}
	}
}

func TestSecretNeverFormatted(t *testing.T) {
	c := &SetLeaseKey{ID: 1, Secret: testLeaseKey(0x41), Actor: "n1"} // "AAAA..."
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cmd", "cmd", c, "secret", c.Secret)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cmd", "secret", c.Secret)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", *c), logged.String()} {
		if strings.Contains(s, "AAAA") || strings.Contains(s, "QUFB") {
			t.Fatalf("the secret shows in %q", s)
		}
	}
}

func TestSnapshotKeepsLeaseKeys(t *testing.T) {
	f := New()
	for i, c := range []Command{&SetLeaseKey{ID: 1, Secret: testLeaseKey(1)}, &SetLeaseKey{ID: 2, Secret: testLeaseKey(2)}} {
		if res := applyLog(f, uint64(i+1), mustEncode(t, c)); res != nil {
			t.Fatal(res)
		}
	}
	st := snapshotRestore(t, f)
	if !bytes.Equal(st.LeaseKeyByID(2), testLeaseKey(2)) || !bytes.Equal(st.LeaseKeyByID(1), testLeaseKey(1)) {
		t.Fatalf("restored keys: %+v %+v", st.LeaseKey, st.PrevLeaseKey)
	}
}

func isRejected(err error) bool {
	var rej *RejectedError
	return errors.As(err, &rej)
}
