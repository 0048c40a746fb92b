package checks

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// quote renders s as an RFC 9110 quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzAuthChallenge: parseChallenge never panics and lower-cases scheme and
// keys; a well-formed Bearer challenge built from any realm, service and
// scope gives them back exactly.
func FuzzAuthChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://h/service/token",service="harbor-registry",scope="repository:library/x:pull"`, "https://h/service/token", "harbor-registry", "repository:library/x:pull")
	f.Add(`Basic realm="Harbor"`, `a"b\c`, "", "x y")
	f.Add(`bearer realm=https://h/t, service=reg`, "", "svc", "")
	f.Add(`Bearer realm="unterminated`, "h", "s", "repository:a:pull repository:b:pull")
	f.Add(`Bearer ="x",,=,realm`, "\\", "\"", "")
	f.Fuzz(func(t *testing.T, header, realm, service, scope string) {
		ch := parseChallenge(header)
		if ch.scheme != strings.ToLower(ch.scheme) {
			t.Errorf("parseChallenge(%q): scheme %q is not lower-case", header, ch.scheme)
		}
		for k := range ch.params {
			if k != strings.ToLower(k) {
				t.Errorf("parseChallenge(%q): key %q is not lower-case", header, k)
			}
		}

		h := "Bearer realm=" + quote(realm) + ",service=" + quote(service) + ", scope=" + quote(scope)
		ch = parseChallenge(h)
		if ch.scheme != "bearer" || ch.params["realm"] != realm || ch.params["service"] != service || ch.params["scope"] != scope || len(ch.params) != 3 {
			t.Errorf("parseChallenge(%q) = %q %q, want bearer realm %q service %q scope %q", h, ch.scheme, ch.params, realm, service, scope)
		}
	})
}

// FuzzCheckConfig decodes a check as a node config does (strict YAML),
// normalizes and validates it: nothing panics, Normalize is idempotent and
// keeps a valid config valid, and NewProber accepts every config Validate
// accepts (it does no I/O, so a refusal there would be a check that
// validation missed).
func FuzzCheckConfig(f *testing.F) {
	for _, s := range []string{
		"name: registry\ntype: registry-pull\nregistry: https://127.0.0.1:5000\nimage: library/hello-world:latest\ncredentials_file: /etc/hm/creds\ntoken_realms: [https://harbor.example.com/service/token]\n",
		"name: core\ntype: http\nurl: http://127.0.0.1:8080/ping\nmethod: HEAD\nstatus: \"200\"\n",
		"name: web\ntype: https\nurl: https://h/\nbody_contains: ok\nca_file: /ca.pem\n",
		"name: redis\ntype: redis\naddress: 127.0.0.1:6379\npassword_file: /etc/hm/redis\nrole: master\n",
		"name: t\ntype: tcp\naddress: '[::1]:80'\ninterval: 1s\ntimeout: 1s\nfall: 2\nrise: 3\n",
		"name: script\ntype: exec\nargv: [\"pgrep -x core\"]\nshell: true\nenv: [TZ=UTC, LANG]\n",
		"name: x\ntype: registry-pull\nregistry: http://r\nimage: library/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nplatform: linux/arm64/v8\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var c Config
		dec := yaml.NewDecoder(bytes.NewReader(doc))
		dec.KnownFields(true)
		if dec.Decode(&c) != nil {
			return
		}
		c.Normalize()
		err := c.Validate("checks[0]")
		if err != nil {
			var fe *conf.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "checks[0].") {
				t.Fatalf("Validate: %v (%T), want a *conf.FieldError under checks[0]", err, err)
			}
			return
		}
		again := c
		again.Normalize()
		if err := again.Validate("checks[0]"); err != nil {
			t.Fatalf("Validate after a second Normalize: %v", err)
		}
		if _, err := NewProber(c); err != nil {
			t.Fatalf("NewProber of a valid config %+v: %v", c, err)
		}
	})
}
