package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/harbormaster/harbormaster/internal/childenv"
	"github.com/harbormaster/harbormaster/internal/secretfile"
)

// Bounds of the texts kept for status.
const (
	maxOutput  = 1024 // State.Output and a probe's output
	maxErr     = 512  // State.LastErr
	maxSummary = 200  // Summary, the output that leaves the node
)

// userAgent is sent by the HTTP-based probes.
const userAgent = "harbormaster-check/1"

// Prober runs one probe of a check.
type Prober interface {
	// Probe runs the probe once and returns a short description of what it
	// saw (at most 1 KiB) and nil when the check passes. The probe ends by
	// ctx's deadline or cancellation, or by the check's own timeout,
	// whichever comes first. Probe is safe for concurrent use, though the
	// Runner never overlaps probes of one check.
	Probe(ctx context.Context) (output string, err error)
}

// NewProber returns the prober of a check. It normalizes and validates a
// copy of c first, so a bad config returns a *conf.FieldError; it does no I/O.
func NewProber(c Config) (Prober, error) {
	c.Argv = append([]string(nil), c.Argv...)
	c.Env = append([]string(nil), c.Env...)
	c.TokenRealms = append([]string(nil), c.TokenRealms...)
	c.Normalize()
	if err := c.Validate(""); err != nil {
		return nil, err
	}
	timeout := time.Duration(c.Timeout)
	var f func(context.Context) (string, error)
	switch c.Type {
	case TypeRegistryPull:
		p, err := newRegistryProber(c)
		if err != nil {
			return nil, err
		}
		f = p.probe
	case TypeHTTP, TypeHTTPS:
		p, err := newHTTPProber(c)
		if err != nil {
			return nil, err
		}
		f = p.probe
	case TypeTCP:
		f = (&tcpProber{addr: c.Address, timeout: timeout}).probe
	case TypeRedis:
		f = (&redisProber{addr: c.Address, passwordFile: c.PasswordFile, role: c.Role, timeout: timeout}).probe
	case TypeExec:
		argv := c.Argv
		if c.Shell {
			argv = []string{"/bin/sh", "-c", c.Argv[0]}
		}
		env := childenv.Build(c.Env, os.LookupEnv)
		f = (&execProber{argv: argv, env: env, timeout: timeout}).probe
	default:
		return nil, fmt.Errorf("checks: type %q has no prober", c.Type) // Validate let an unknown type through: a bug
	}
	return &boundedProber{probe: f, timeout: timeout}, nil
}

// boundedProber applies the check's timeout and the output bound to a probe.
type boundedProber struct {
	probe   func(context.Context) (string, error)
	timeout time.Duration
}

func (b *boundedProber) Probe(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	out, err := b.probe(ctx)
	return clipHead(out, maxOutput), err
}

// timeoutError is a probe that ran out of time while doing stage.
type timeoutError struct {
	stage string // "" or what the probe was doing, e.g. "manifest library/x:latest"
	after time.Duration
}

func (e *timeoutError) Error() string {
	if e.stage == "" {
		return "timed out after " + e.after.String()
	}
	return e.stage + ": timed out after " + e.after.String()
}

// Unwrap makes errors.Is(err, context.DeadlineExceeded) true.
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// stageErr wraps err, which happened during stage, into a short message; a
// failure caused by ctx's deadline becomes a *timeoutError.
func stageErr(ctx context.Context, timeout time.Duration, stage string, err error) error {
	if deadlinePassed(ctx) {
		return &timeoutError{stage: stage, after: timeout}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is in the stage or the config already
	}
	return fmt.Errorf("%s: %w", stage, err)
}

// deadlinePassed reports whether ctx ended, or is about to end, by its
// deadline. A socket deadline set from ctx's may fire a moment before ctx
// itself is done.
func deadlinePassed(ctx context.Context) bool {
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return true
	case nil:
		dl, ok := ctx.Deadline()
		return ok && !time.Now().Before(dl)
	}
	return false
}

// clipHead keeps the start of s, at most n bytes of valid UTF-8.
func clipHead(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// clipTail keeps the end of s, at most n bytes of valid UTF-8.
func clipTail(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := len(s) - (n - len(ell))
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return ell + s[cut:]
}

// Summary is the part of a probe's output that may leave the node (the
// replicated check result, status, explain): its first line that is not
// blank, as printable ASCII (a tab becomes a space, any other control
// character or non-ASCII character a '?'), without leading and trailing
// spaces, at most 200 bytes ("..." ends a cut line). An exec check's program
// should therefore say what it found on its first line, as a Nagios plugin
// does; the rest of the output stays on the node (State.Output, the agent's
// debug log).
func Summary(output string) string {
	for line := range strings.Lines(output) {
		if s := printableASCII(line, maxSummary); s != "" {
			return s
		}
	}
	return ""
}

// printableASCII renders s as printable ASCII on one line (see Summary),
// trimmed, at most max bytes.
func printableASCII(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.TrimRight(s, "\r\n") {
		switch {
		case r == '\t':
			b.WriteByte(' ')
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
	}
	out := strings.TrimSpace(b.String())
	if len(out) > max {
		out = strings.TrimRight(out[:max-3], " ") + "..."
	}
	return out
}

// oneLinePrintable is s with every run of white space made one space and
// every other non-printable character a '?', cut to max bytes on a UTF-8
// boundary.
func oneLinePrintable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) || unicode.IsSpace(r) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(s, "?"))
	return clipHead(oneLine(s), max)
}

// oneLine collapses runs of white space (new lines included) into one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// since formats the time since start for outputs: "3ms", "250µs".
func since(start time.Time) string {
	d := time.Since(start)
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// readSecretLine returns the first line of a secret file (a password or
// credentials file), refusing a file others may read or write
// (internal/secretfile) and an empty line.
func readSecretLine(field, path string) (string, error) {
	return secretfile.ReadLine(field, path)
}

// credentials is a username and password for a registry.
type credentials struct{ user, pass string }

// readCredentials reads "username:password" from the first line of path.
func readCredentials(path string) (*credentials, error) {
	line, err := readSecretLine("credentials_file", path)
	if err != nil {
		return nil, err
	}
	user, pass, ok := strings.Cut(line, ":")
	if !ok || user == "" {
		return nil, fmt.Errorf("credentials_file %s: want username:password on the first line", path)
	}
	return &credentials{user: user, pass: pass}, nil
}

// newTransport returns a fresh HTTP transport for one probe: no proxy (the
// checks test this node, not a path through a proxy), the system's CAs plus
// those of caFile (read now, so the file may be rotated), TLS 1.2 or later.
func newTransport(caFile string) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{}).DialContext,
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}, nil
}
