package keepalived

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

func node(name string, last byte) lab.Node {
	ip := netip.AddrFrom4([4]byte{198, 18, 0, last})
	return lab.Node{Name: name, IP: ip, Iface: "eth0"}
}

func TestConfig(t *testing.T) {
	vip := netip.MustParsePrefix("198.18.0.200/24")
	n1, n2, n3 := node("n1", 11), node("n2", 12), node("n3", 13)
	v2 := Config(n1, []lab.Node{n2, n3}, vip, time.Second)
	for _, want := range []string{"router_id n1", "state BACKUP", "nopreempt", "interface eth0", "virtual_router_id 51",
		"priority 100", "advert_int 1\n", "unicast_src_ip 198.18.0.11", "198.18.0.12\n", "198.18.0.13\n",
		"198.18.0.200/24 dev eth0"} {
		if !strings.Contains(v2, want) {
			t.Errorf("advert 1s config lacks %q:\n%s", want, v2)
		}
	}
	if strings.Contains(v2, "vrrp_version") {
		t.Errorf("advert 1s config sets vrrp_version:\n%s", v2)
	}
	v3 := Config(n1, []lab.Node{n2, n3}, vip, 100*time.Millisecond)
	for _, want := range []string{"vrrp_version 3", "advert_int 0.1\n"} {
		if !strings.Contains(v3, want) {
			t.Errorf("advert 0.1s config lacks %q:\n%s", want, v3)
		}
	}
	if got := advertString(1500 * time.Millisecond); got != "1.5" {
		t.Errorf("advertString(1.5s) = %q", got)
	}
}
