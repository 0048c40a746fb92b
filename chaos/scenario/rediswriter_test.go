package scenario

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/internal/resp"
)

func TestAnalyzeWrites(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Writes every 10 ms; the fault at 100 ms; 4..6 acknowledged by a
	// cut-off master and lost; the new master from 400 ms.
	var acks []Ack
	for i, ms := range []int{10, 20, 30, 110, 120, 130, 400, 410} {
		acks = append(acks, Ack{Val: int64(i + 1), Start: at(ms - 1), End: at(ms)})
	}
	final := []string{"1", "2", "3", "7", "8"}
	r := AnalyzeWrites(acks, final, at(100), at(420))
	if len(r.Lost) != 3 || r.Lost[0].Val != 4 || r.Lost[2].Val != 6 {
		t.Errorf("lost = %+v, want values 4..6", r.Lost)
	}
	// The client saw a gap from 130 to 400 ms.
	if r.Outage != 270*time.Millisecond || !r.OutageFrom.Equal(at(130)) {
		t.Errorf("outage = %s from %s, want 270ms from 130ms", r.Outage, r.OutageFrom)
	}
	// The data saw one from 30 ms (before the fault: counted from the
	// fault) to 400 ms.
	if r.Failover != 300*time.Millisecond {
		t.Errorf("failover = %s, want 300ms", r.Failover)
	}
	// Nothing acknowledged after the fault: the gap runs from the last
	// acknowledgement (30 ms) to the end.
	r = AnalyzeWrites(acks[:3], final, at(100), at(500))
	if r.Outage != 470*time.Millisecond || r.Failover != 400*time.Millisecond || len(r.Lost) != 0 {
		t.Errorf("no write after the fault: %+v", r)
	}
}

func TestDualMasters(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := func(ms int, h ...string) lab.Sample {
		return lab.Sample{At: t0.Add(time.Duration(ms) * time.Millisecond), Holders: h}
	}
	d, vs := DualMasters([]lab.Sample{s(0, "n1"), s(10, "n1", "n2"), s(20, "n1", "n2"), s(30, "n2")}, 10*time.Millisecond)
	if d != 20*time.Millisecond || len(vs) != 1 {
		t.Errorf("DualMasters = %s %v, want 20ms and one run", d, vs)
	}
	if d, vs := DualMasters([]lab.Sample{s(0, "n1"), s(10), s(20, "n2")}, 10*time.Millisecond); d != 0 || vs != nil {
		t.Errorf("one master at a time: %s %v", d, vs)
	}
}

// TestStrings converts the array replies of RedisConn.Do, as read by
// internal/resp, and passes Do's error through.
func TestStrings(t *testing.T) {
	in := "*3\r\n$1\r\n1\r\n+2\r\n$-1\r\n-NOREPLICAS Not enough good replicas to write.\r\n:42\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	if v, err := Strings(resp.ReadReply(r, resp.Limits{})); err != nil || strings.Join(v, ",") != "1,2," {
		t.Errorf("array: %q %v, want 1,2 and an empty string for the null", v, err)
	}
	v, err := resp.ReadReply(r, resp.Limits{})
	re, ok := v.(*resp.Error)
	if err != nil || !ok {
		t.Fatalf("error reply: %#v %v", v, err)
	}
	if _, err := Strings(nil, re); err != re || errClass(err) != "NOREPLICAS" {
		t.Errorf("error reply: %v (class %q), want the reply, class NOREPLICAS", err, errClass(err))
	}
	if _, err := Strings(resp.ReadReply(r, resp.Limits{})); err == nil || err.Error() != "resp: int64 is not an array" {
		t.Errorf("integer: %v, want an error saying it is not an array", err)
	}
}
