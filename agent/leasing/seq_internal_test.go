package leasing

import "testing"

// A boot whose sequence numbers run out takes the next boot and keeps
// them increasing; without a way to take one, it says so.
func TestSequenceNumbersRollToTheNextBoot(t *testing.T) {
	boots := []uint64{7}
	ln := newLeaseNet(nil, Config{Boot: 5, NextBoot: func() (uint64, error) {
		b := boots[0]
		boots = boots[1:]
		return b, nil
	}}, nil)
	ln.counterMax = 3
	var prev uint64
	for i := range 5 {
		s, err := ln.nextSeq()
		if err != nil {
			t.Fatalf("seq %d: %v", i, err)
		}
		if s <= prev {
			t.Fatalf("seq %d = %d, not above %d", i, s, prev)
		}
		prev = s
	}
	if got := prev >> seqBootShift; got != 7 {
		t.Fatalf("boot after the roll = %d, want 7", got)
	}

	stuck := newLeaseNet(nil, Config{Boot: 5}, nil)
	stuck.counterMax = 1
	if _, err := stuck.nextSeq(); err != nil {
		t.Fatal(err)
	}
	if _, err := stuck.nextSeq(); err == nil {
		t.Fatal("no error when the sequence numbers ran out and no next boot can be taken")
	}
	back := newLeaseNet(nil, Config{Boot: 5, NextBoot: func() (uint64, error) { return 5, nil }}, nil)
	back.counterMax = 1
	_, _ = back.nextSeq()
	if _, err := back.nextSeq(); err == nil {
		t.Fatal("a next boot that did not increase was accepted")
	}
}
