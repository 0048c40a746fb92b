// Package yamlstrict holds the checks shared by harbormaster's strict YAML
// decoders (node config, spec).
package yamlstrict

import (
	"errors"
	"io"

	"gopkg.in/yaml.v3"
)

// ExtraDocument reports whether a second, non-empty YAML document follows
// what dec has decoded so far ("---" followed by nothing, or only a
// comment, is fine).
func ExtraDocument(dec *yaml.Decoder) bool {
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil || !emptyDoc(&n) {
			return true
		}
	}
}

func emptyDoc(n *yaml.Node) bool {
	if n.Kind == 0 {
		return true
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			if !(c.Kind == yaml.ScalarNode && c.Tag == "!!null") {
				return false
			}
		}
		return true
	}
	return false
}
