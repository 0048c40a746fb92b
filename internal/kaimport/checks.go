package kaimport

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// check is one translated check, with the comment lines that say where it
// came from.
type check struct {
	Name     string
	Comments []string
	Fields   [][2]string // key, YAML value, in order
}

// Bounds of the node config's checks (docs/configuration.md, Checks).
const (
	minInterval = 10 * time.Millisecond
	maxInterval = time.Hour
	maxFallRise = 100
)

var devTCP = regexp.MustCompile(`^<\s*/dev/tcp/([^/\s]+)/([0-9]+)$`)

// translateCheck turns a tracked vrrp_script into a check: a docker pull of
// an image on a named registry is a registry-pull, a curl or wget of a URL
// an http(s) check, a bash /dev/tcp probe a tcp check, anything else an
// exec check with the same command (shell: true when it uses shell syntax,
// which is what its author meant).
func translateCheck(s *script, name string, lint *linter) check {
	c := check{Name: name}
	c.Comments = append(c.Comments, fmt.Sprintf("vrrp_script %s (%s:%d): script %q", s.Name, s.At.File, s.At.Line, s.Command))
	words, _ := splitWords(s.Command)
	shell := runsShell(words)
	body := s.Command
	if shell {
		body = strings.Join(words[2:], " ")
	}
	bodyWords, _ := splitWords(body)
	ops := shellOperators(bodyWords)
	typ := ""
	switch {
	case devTCP.MatchString(strings.TrimSpace(body)):
		m := devTCP.FindStringSubmatch(strings.TrimSpace(body))
		typ = "tcp"
		c.Fields = append(c.Fields, [2]string{"type", "tcp"}, [2]string{"address", yamlString(net.JoinHostPort(m[1], m[2]))})
	default:
		if reg, img, ok := dockerPull(bodyWords); ok {
			typ = "registry-pull"
			c.Comments = append(c.Comments,
				"docker pull used this host's docker login and trust store: for a private project add",
				"credentials_file (one line user:password, mode 0600); for a private CA add ca_file")
			c.Fields = append(c.Fields, [2]string{"type", typ}, [2]string{"registry", yamlString(reg)}, [2]string{"image", yamlString(img)})
		} else if u, insecure, failOnHTTP, ok := curlURL(bodyWords, ops); ok {
			typ = "http"
			if strings.HasPrefix(u, "https://") {
				typ = "https"
			}
			if !failOnHTTP {
				c.Comments = append(c.Comments, "without -f/--fail the script passed on any HTTP answer; this check passes on 200-399 (status:)")
			}
			if insecure {
				c.Comments = append(c.Comments, "the script skipped certificate verification (-k / --no-check-certificate); this check verifies: add ca_file")
			}
			c.Fields = append(c.Fields, [2]string{"type", typ}, [2]string{"url", yamlString(u)})
		}
	}
	if typ == "" {
		c.Fields = append(c.Fields, [2]string{"type", "exec"})
		switch {
		case shell:
			c.Fields = append(c.Fields, [2]string{"argv", yamlList([]string{body})}, [2]string{"shell", "true"})
		case len(words) > 0 && slices.Contains(shellOnly, words[0]):
			c.Comments = append(c.Comments, "keepalived could not run this shell builtin without a shell (see the warning); run by bash here, as its author meant")
			c.Fields = append(c.Fields, [2]string{"argv", yamlList([]string{"/bin/bash", "-c", body})})
		case len(ops) > 0:
			c.Comments = append(c.Comments, "keepalived ran this without a shell (see the warning); run by /bin/sh -c here, as its author meant")
			c.Fields = append(c.Fields, [2]string{"argv", yamlList([]string{body})}, [2]string{"shell", "true"})
		default:
			c.Fields = append(c.Fields, [2]string{"argv", yamlList(words)})
		}
	}
	if s.User != "" {
		lint.note(s.At, "vrrp_script %s: user %s has no equivalent: checks run as the agent's user; drop privileges in the command if it needs to (runuser, setpriv)", s.Name, s.User)
	}
	interval := s.Interval
	if interval == 0 {
		interval = time.Second
		c.Comments = append(c.Comments, "interval: keepalived's default, 1s")
	}
	if interval < minInterval || interval > maxInterval {
		clamped := min(max(interval, minInterval), maxInterval)
		lint.warn(s.At, "vrrp_script %s: interval %s is outside the checks' 10ms to 1h; written as %s", s.Name, interval, clamped)
		interval = clamped
	}
	c.Fields = append(c.Fields, [2]string{"interval", interval.String()})
	if s.Timeout > 0 {
		t := s.Timeout
		if t > interval {
			lint.warn(s.At, "vrrp_script %s: timeout %s is longer than interval %s; a check's timeout is at most its interval; written as %s", s.Name, t, interval, interval)
			t = interval
		}
		c.Fields = append(c.Fields, [2]string{"timeout", t.String()})
	}
	for _, fr := range []struct {
		key string
		v   int
	}{{"fall", s.Fall}, {"rise", s.Rise}} {
		if fr.v == 0 {
			continue
		}
		v := fr.v
		if v > maxFallRise {
			lint.warn(s.At, "vrrp_script %s: %s %d is over the checks' 100; written as 100", s.Name, fr.key, v)
			v = maxFallRise
		}
		c.Fields = append(c.Fields, [2]string{fr.key, fmt.Sprint(v)})
	}
	return c
}

// dockerPull finds "docker pull [options] HOST/REPO[:TAG]" in words and
// returns the registry URL (https, as docker uses for a registry other
// than localhost) and the image. A reference without a registry host
// (Docker Hub) is not translated.
func dockerPull(words []string) (registry, image string, ok bool) {
	for i := 0; i+1 < len(words); i++ {
		if !strings.HasSuffix(words[i], "docker") && words[i] != "podman" || words[i+1] != "pull" {
			continue
		}
		for _, w := range words[i+2:] {
			if strings.HasPrefix(w, "-") {
				continue
			}
			host, rest, found := strings.Cut(w, "/")
			if !found || !(strings.ContainsAny(host, ".:") || host == "localhost") || rest == "" {
				return "", "", false
			}
			scheme := "https://"
			if host == "localhost" || strings.HasPrefix(host, "localhost:") || strings.HasPrefix(host, "127.") {
				scheme = "http://"
			}
			return scheme + host, rest, true
		}
	}
	return "", "", false
}

// curlURL finds "curl [options] URL" or "wget [options] URL" as the whole
// command (output redirections aside): its URL, whether it skipped TLS
// verification, and whether it failed on HTTP errors (curl -f; wget always
// does).
func curlURL(words, ops []string) (url string, insecure, failOnHTTP, ok bool) {
	if len(words) == 0 {
		return "", false, false, false
	}
	for _, op := range ops {
		if op != ">" {
			return "", false, false, false // a pipeline or a sequence: more than a fetch
		}
	}
	prog := words[0]
	if i := strings.LastIndex(prog, "/"); i >= 0 {
		prog = prog[i+1:]
	}
	if prog != "curl" && prog != "wget" {
		return "", false, false, false
	}
	failOnHTTP = prog == "wget"
	for _, w := range words[1:] {
		switch {
		case strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://"):
			url = w
		case w == "-k" || w == "--insecure" || w == "--no-check-certificate":
			insecure = true
		case w == "-f" || w == "--fail" || (strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "--") && strings.Contains(w, "f")):
			failOnHTTP = true
		}
		if strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "--") && strings.Contains(w, "k") {
			insecure = true
		}
	}
	return url, insecure, failOnHTTP, url != ""
}
