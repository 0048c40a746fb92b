package hostport

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
	}{
		{"127.0.0.1:6379", ""},
		{"[::1]:6379", ""},
		{"redis-1.example.internal:6379", ""},
		{"", "is missing"},
		{"127.0.0.1", "is not host:port"},
		{"127.0.0.1:0", "port \"0\""},
		{"127.0.0.1:http", "port \"http\""},
		{":6379", "has no host"},
		{"0.0.0.0:6379", "not an address one can connect to"},
		{"bad_host:6379", "neither an IP address nor a valid host name"},
		{"-x.example:6379", "neither an IP address"},
	} {
		got := Check(tc.addr, "127.0.0.1:6379")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Check(%q) = %q, want it to contain %q", tc.addr, got, tc.want)
		}
	}
	if ValidHostname(strings.Repeat("a", 64) + ".example") {
		t.Error("a 64-character label is valid")
	}
}
