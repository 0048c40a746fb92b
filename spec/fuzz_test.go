package spec

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzSpec: Parse never panics; a spec it accepts renders (YAML and JSON)
// to documents that parse to the same spec. Validate on whatever JSON
// decodes never panics either (the API's and the log's path).
func FuzzSpec(f *testing.F) {
	for _, seed := range []string{
		"roles:\n  - {name: web, type: service, candidates: [{node: n1, priority: 10}], stop_timeout: 30s}\n",
		"roles:\n  - {name: registry, type: vip, address: 198.18.0.200/24, requires: [pull], preempt: true, preempt_delay: 5s, hold_down: 1m}\n",
		"roles:\n  - {name: redis, type: redis-master, master_name: mymaster}\n  - {name: redis-ip, type: vip, address: \"fd00::200/64\", follow: redis, avoid: [x]}\n  - {name: x, type: service, marker: true}\n",
		"roles:\n  - {name: ip, type: vip, address: 198.18.0.255/24}\n",
		`{"roles":[{"name":"a","type":"service","hold_down":"1193h2m47.7965s"}]}`,
		"roles: []\n---\nroles: []\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var raw Spec
		if json.Unmarshal(in, &raw) == nil {
			_ = raw.Validate()
		}
		s, err := Parse(in)
		if err != nil {
			return
		}
		again, err := Parse(s.YAML())
		if err != nil {
			t.Fatalf("an accepted spec, rendered as YAML, is refused: %v\ninput:\n%s\nYAML:\n%s", err, in, s.YAML())
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("YAML round trip changed the spec:\n%#v\n%#v", s, again)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("JSON of an accepted spec: %v", err)
		}
		var fromJSON Spec
		if err := json.Unmarshal(b, &fromJSON); err != nil {
			t.Fatalf("JSON of an accepted spec does not decode: %v\n%s", err, b)
		}
		if err := fromJSON.Validate(); err != nil {
			t.Fatalf("JSON of an accepted spec does not validate: %v\n%s", err, b)
		}
	})
}
