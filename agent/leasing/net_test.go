package leasing

import (
	"testing"
	"time"
)

// TestWireTTL: a lease goes on the wire as uint32 milliseconds only when a
// voter would grant it as asked; nothing wraps (1193h2m47.7965s once went
// out as 500 ms).
func TestWireTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want uint32
		ok   bool
	}{
		{500 * time.Millisecond, 500, true},
		{time.Millisecond, 1, true},
		{MaxTTL, uint32(MaxTTL / time.Millisecond), true},
		{MaxTTL + time.Millisecond, 0, false},
		{1193*time.Hour + 2*time.Minute + 47796500*time.Microsecond, 0, false},
		{0, 0, false},
		{-time.Second, 0, false},
		{time.Microsecond, 0, false},
	} {
		got, err := wireTTL(tc.ttl)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("wireTTL(%s) = %d, %v; want %d, ok %v", tc.ttl, got, err, tc.want, tc.ok)
		}
	}
}
