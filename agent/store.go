package agent

import (
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Store faults (docs/operations.md, "Store faults"). A node whose Raft
// store fails to write (a full disk, an I/O error) must not keep acting as
// if its state were safe: it fences itself (its lease lapses, its roles
// move within the lease), hashicorp/raft steps a leader down on a failed
// append, the watchdog stops being pinged (no renewals), /healthz fails and
// the API refuses writes on it. A store that cannot even be opened (a
// damaged raft.db) is a StoreError: the agent exits with its own code.

// StoreError says the node's Raft store cannot be used; the agent exits
// with code 5 on it.
type StoreError struct {
	Path string
	Err  error
}

func (e *StoreError) Error() string {
	return fmt.Sprintf("%s: %v; the Raft store is damaged. Keep the file for inspection, then either restore the data dir from a backup, or move it away and start the agent with an empty data dir so the node rejoins and is caught up by the leader (docs/operations.md, Store faults)", e.Path, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }

// openGuarded runs f, which opens and reads a store file, turning a panic
// or a memory fault on a damaged file (bbolt maps it) into a StoreError.
// f's own errors pass through.
func openGuarded(path string, f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = &StoreError{Path: path, Err: fmt.Errorf("reading it failed: %v", r)}
		}
	}()
	return f()
}

// storeFaults records write failures of the Raft stores, timed on the
// monotonic clock (mono).
type storeFaults struct {
	on     func(op string, err error) // called on every failure
	mono   func() time.Duration
	last   atomic.Int64 // mono reading of the last failure, 0: none
	mu     sync.Mutex
	lastEr error
}

func (s *storeFaults) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	s.last.Store(int64(s.mono()) + 1)
	s.mu.Lock()
	s.lastEr = fmt.Errorf("%s: %w", op, err)
	s.mu.Unlock()
	if s.on != nil {
		s.on(op, err)
	}
	return err
}

// recent returns the last failure if it happened within d, else nil.
func (s *storeFaults) recent(d time.Duration) error {
	at := s.last.Load()
	if at == 0 || s.mono()-time.Duration(at-1) > d {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastEr
}

// guardedLogs reports the write failures of a log store. inject, when
// set (tests: Options.StoreWriteErr), fails writes without touching it.
type guardedLogs struct {
	raft.LogStore
	f      *storeFaults
	inject func() error
}

func (g guardedLogs) write(op string, w func() error) error {
	if g.inject != nil {
		if err := g.inject(); err != nil {
			return g.f.fail(op, err)
		}
	}
	return g.f.fail(op, w())
}

func (g guardedLogs) StoreLog(l *raft.Log) error {
	return g.write("store log", func() error { return g.LogStore.StoreLog(l) })
}
func (g guardedLogs) StoreLogs(ls []*raft.Log) error {
	return g.write("store logs", func() error { return g.LogStore.StoreLogs(ls) })
}
func (g guardedLogs) DeleteRange(min, max uint64) error {
	return g.write("delete logs", func() error { return g.LogStore.DeleteRange(min, max) })
}

// guardedStable reports the write failures of a stable store.
type guardedStable struct {
	raft.StableStore
	f      *storeFaults
	inject func() error
}

func (g guardedStable) write(op string, w func() error) error {
	return guardedLogs{f: g.f, inject: g.inject}.write(op, w)
}

func (g guardedStable) Set(k, v []byte) error {
	return g.write("stable set", func() error { return g.StableStore.Set(k, v) })
}
func (g guardedStable) SetUint64(k []byte, v uint64) error {
	return g.write("stable set", func() error { return g.StableStore.SetUint64(k, v) })
}

// guardedSnaps reports the failures of snapshot writes.
type guardedSnaps struct {
	raft.SnapshotStore
	f *storeFaults
}

func (g guardedSnaps) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := g.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, g.f.fail("create snapshot", err)
	}
	return guardedSink{sink, g.f}, nil
}

type guardedSink struct {
	raft.SnapshotSink
	f *storeFaults
}

func (g guardedSink) Write(p []byte) (int, error) {
	n, err := g.SnapshotSink.Write(p)
	return n, g.f.fail("write snapshot", err)
}

func (g guardedSink) Close() error { return g.f.fail("close snapshot", g.SnapshotSink.Close()) }

var _ io.Writer = guardedSink{}

// storeFaultWindow is how long after a write failure the node counts as
// faulty: it fences itself for a lease and more on every failure.
func (a *Agent) storeFaultWindow() time.Duration { return 2*a.timing.Lease + a.timing.Renew }

// onStoreFault is the reaction to a failed store write: fence (at most
// once a lease: fencing records an event, which is a write too).
func (a *Agent) onStoreFault(op string, err error) {
	a.obs.storeErrors.Inc()
	if a.faultLogged.CompareAndSwap(false, true) {
		a.log.Error("the Raft store failed to write: fencing this node (its roles move within the lease), failing /healthz and refusing writes until writes succeed again",
			"op", op, "err", err)
	}
	now := int64(a.clock.Mono()) + 1
	if last := a.faultFenced.Load(); last != 0 && now-last < int64(a.timing.Lease) {
		return
	}
	a.faultFenced.Store(now)
	a.fenceSelf("store fault: " + op + ": " + err.Error())
}

// StoreFault returns the last store write failure while the node counts
// as faulty (nil otherwise).
func (a *Agent) StoreFault() error {
	if a.faults == nil { // the stores are not open yet
		return nil
	}
	err := a.faults.recent(a.storeFaultWindow())
	if err == nil {
		a.faultLogged.Store(false)
	}
	return err
}

// memSnaps is the snapshot store of Options.InmemStore (tests). raft's
// InmemSnapshotStore makes a snapshot the latest as soon as it is
// created, so a leader that sends the latest snapshot to a follower reads
// its buffer while it is still being written: a torn snapshot, and a data
// race the race detector reports (a CI run of
// TestInmemFollowerCatchesUpFromSnapshot). Here each snapshot is written to
// a store of its own, which becomes the latest once its sink is closed.
type memSnaps struct {
	mu     sync.Mutex
	latest *raft.InmemSnapshotStore // nil: no snapshot yet
}

func (m *memSnaps) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	s := raft.NewInmemSnapshotStore()
	sink, err := s.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &memSink{SnapshotSink: sink, done: func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		// An install and a snapshot of its own may finish in either
		// order on a follower: the latest is the one of the highest
		// index.
		if m.latest != nil {
			if cur, _ := m.latest.List(); len(cur) > 0 && (cur[0].Term > term || cur[0].Term == term && cur[0].Index > index) {
				return
			}
		}
		m.latest = s
	}}, nil
}

func (m *memSnaps) List() ([]*raft.SnapshotMeta, error) {
	m.mu.Lock()
	s := m.latest
	m.mu.Unlock()
	if s == nil {
		return []*raft.SnapshotMeta{}, nil
	}
	return s.List()
}

func (m *memSnaps) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	m.mu.Lock()
	s := m.latest
	m.mu.Unlock()
	if s == nil {
		return nil, nil, fmt.Errorf("snapshot %s: no snapshot taken yet", id)
	}
	return s.Open(id)
}

// memSink publishes its store once closed (not when canceled).
type memSink struct {
	raft.SnapshotSink
	done func()
}

func (s *memSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	s.done()
	return nil
}
