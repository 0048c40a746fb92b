package checks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

// writeFileMode is writeFile with the file's mode set to mode (WriteFile's
// mode is masked by the umask).
func writeFileMode(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := writeFile(t, dir, name, content)
	if err := os.Chmod(p, mode); err != nil {
		t.Fatalf("chmod %s: %v", p, err)
	}
	return p
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int { return labtest.FreePort(t) }

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustProber builds the prober of c or fails the test.
func mustProber(t *testing.T, c Config) Prober {
	t.Helper()
	p, err := NewProber(c)
	if err != nil {
		t.Fatalf("NewProber(%+v): %v", c, err)
	}
	return p
}

// probeResult is one Probe call.
type probeResult struct {
	out     string
	err     error
	elapsed time.Duration
}

// runProbe runs one probe of c. Its safety net, 10s on top of the check's
// own timeout, cancels the probe rather than setting a deadline: a probe it
// ends fails with a cancellation, so "timed out after <the check's
// timeout>" proves that the check's own timeout ended the probe.
func runProbe(t *testing.T, c Config) probeResult {
	t.Helper()
	p := mustProber(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	safety := time.AfterFunc(10*time.Second, cancel)
	defer safety.Stop()
	start := time.Now()
	out, err := p.Probe(ctx)
	return probeResult{out: out, err: err, elapsed: time.Since(start)}
}

// checkResult asserts a probe's outcome: wantErr empty means it must pass;
// otherwise the error must contain every "|"-separated part of wantErr.
// wantOut parts must be in the output.
func checkResult(t *testing.T, r probeResult, wantErr, wantOut string) {
	t.Helper()
	if wantErr == "" {
		if r.err != nil {
			t.Errorf("Probe: got error %q (output %q), want success", r.err, r.out)
		}
	} else if r.err == nil {
		t.Errorf("Probe: got success (output %q), want an error containing %q", r.out, wantErr)
	} else {
		for _, part := range strings.Split(wantErr, "|") {
			if !strings.Contains(r.err.Error(), part) {
				t.Errorf("Probe: got error %q, want it to contain %q", r.err, part)
			}
		}
	}
	if wantOut != "" {
		for _, part := range strings.Split(wantOut, "|") {
			if !strings.Contains(r.out, part) {
				t.Errorf("Probe: got output %q, want it to contain %q", r.out, part)
			}
		}
	}
	if len(r.out) > maxOutput {
		t.Errorf("Probe: output is %d bytes, want at most %d", len(r.out), maxOutput)
	}
}
