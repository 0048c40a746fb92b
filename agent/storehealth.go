package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// storeProbeFile is the file the store probe rewrites in the data dir.
const storeProbeFile = "healthz-probe"

// storeProbeEvery is how often the probe writes at most: /healthz may be
// polled often, an fsync per request would load the disk the log lives on.
const storeProbeEvery = 5 * time.Second

// storeHealth answers whether this node's store is writable, for /healthz.
// Two sources feed it: the Raft stores' own write failures (faults: the
// agent's StoreFault, store.go) and a probe (write and fsync a small file
// in the data dir, at most every storeProbeEvery, the answer cached in
// between). Safe for concurrent use.
type storeHealth struct {
	dir    string
	faults func() error
	// probe writes one probe; tests replace it to inject a failure.
	probe func(dir string) error

	mu      sync.Mutex
	checked time.Time // when the probe last ran
	probed  error     // its result
}

func newStoreHealth(dir string, faults func() error) *storeHealth {
	return &storeHealth{dir: dir, faults: faults, probe: writeProbe}
}

// Err returns why the store is not healthy at now, or nil: a recent store
// write failure first, else the probe's result (run again when the cached
// one is older than storeProbeEvery). Without a data dir there is nothing
// to probe.
func (s *storeHealth) Err(now time.Time) error {
	if err := s.faults(); err != nil {
		return fmt.Errorf("store fault: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return nil
	}
	if s.checked.IsZero() || now.Sub(s.checked) >= storeProbeEvery || now.Before(s.checked) {
		s.probed, s.checked = s.probe(s.dir), now
	}
	return s.probed
}

// writeProbe writes, fsyncs and closes the probe file in dir.
func writeProbe(dir string) error {
	path := filepath.Join(dir, storeProbeFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("data_dir not writable: %w", err)
	}
	_, werr := f.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("data_dir not writable: write %s: %w", path, err)
	}
	return nil
}

// storeHealthy returns why this node's store is not writable, or nil.
func (a *Agent) storeHealthy() error { return a.store.Err(time.Now()) }
