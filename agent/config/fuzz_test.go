package config_test

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/agent/config"
)

// FuzzConfig: Parse never panics, and a config it accepts, written back as
// YAML (defaults filled in), is accepted again.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(doc()))
	f.Add([]byte(doc(set("timing", "{lease: 10m, renew: 1m}"), set("garp", "{repeat: 3, interval: 100ms, refresh: 1h}"))))
	f.Add([]byte(doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, max_connections: 10, idle_timeout: 1m}"))))
	f.Add([]byte(doc(set("checks", "[{name: pull, type: tcp, address: 127.0.0.1:5000, interval: 2s, rise: 2, fall: 3}]"),
		set("services", "{notary: {start: [/bin/true], stop: [/bin/true]}, clair: {mode: systemd, unit: clair.service}}"))))
	f.Add([]byte(doc(set("timing", "{lease: 1193h2m47.7965s}"))))
	f.Add([]byte("node_id: [\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := config.Parse(in)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config with the error %v", err)
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		if _, err := config.Parse(out); err != nil {
			t.Fatalf("an accepted config, written back, is refused: %v\ninput:\n%s\nwritten:\n%s", err, in, out)
		}
	})
}
