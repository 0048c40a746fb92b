package scenario

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/internal/resp"
)

// The Redis observers: a writer in the client namespace that records every
// acknowledged write, and a sampler that asks every node's Redis, from
// inside that node's namespace, whether it takes a write. Both talk to
// Redis with RedisConn over connections dialed by LabDialer: every dial
// runs lab.GuardHere on a thread locked into the namespace the traffic
// leaves from, so nothing is ever sent from the root namespace (DESIGN.md
// §7). A socket keeps the namespace it was created in; the goroutines that
// use it afterwards may run on any thread.

// Spawner runs fn on a thread inside a lab namespace (lab.Lab.InNamespace
// bound to a host); nil runs fn directly, for a process that was started
// inside the namespace.
type Spawner func(fn func() error) error

// LabDialer returns a dialer that opens every connection inside the
// namespace of spawn, after lab.GuardHere has checked that namespace and
// the target address.
func LabDialer(spawn Spawner) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return labDialerWith(spawn, net.Dialer{})
}

// redisTimeout bounds one command of the writer and of the sampler, and
// their dials.
const redisTimeout = 50 * time.Millisecond

// WriteTarget is where the writer's RPUSHes go: one Redis address
// (DirectTarget), or the master a discovery names (SentinelTarget and the
// clients of redisclients.go).
type WriteTarget interface {
	// RPush appends val to the list key; nil means Redis acknowledged it.
	RPush(ctx context.Context, key string, val int64) error
	Close()
}

// DirectTarget writes to one address (the Redis VIP).
type DirectTarget struct{ C *RedisConn }

// RPush implements WriteTarget.
func (t DirectTarget) RPush(ctx context.Context, key string, val int64) error {
	_, err := t.C.Do(ctx, "RPUSH", key, strconv.FormatInt(val, 10))
	return err
}

// Close implements WriteTarget.
func (t DirectTarget) Close() { t.C.Close() }

// Ack is one write the writer sent and Redis acknowledged.
type Ack struct {
	Val        int64
	Start, End time.Time // sent, acknowledged
}

// RedisWriter RPUSHes an increasing counter to one list, one write per
// Every, each with a short timeout, reconnecting after errors, and records
// every acknowledged write. Start it with StartRedisWriter; Stop it once.
type RedisWriter struct {
	cli   WriteTarget
	key   string
	every time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu     sync.Mutex
	acks   []Ack
	errs   int
	errMsg map[string]int
}

// StartRedisWriter starts writing to key through cli (which it closes on
// Stop), one write per every (1 ms when zero; a write that takes longer
// delays the next, it never overlaps).
func StartRedisWriter(cli WriteTarget, key string, every time.Duration) *RedisWriter {
	if every <= 0 {
		every = time.Millisecond
	}
	w := &RedisWriter{cli: cli, key: key, every: every, stop: make(chan struct{}), done: make(chan struct{}), errMsg: map[string]int{}}
	go w.run()
	return w
}

func (w *RedisWriter) run() {
	defer close(w.done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for n := int64(1); ; n++ {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		start := time.Now()
		err := w.cli.RPush(ctx, w.key, n)
		end := time.Now()
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acks = append(w.acks, Ack{Val: n, Start: start, End: end})
		} else {
			w.errs++
			w.errMsg[errClass(err)]++
		}
		w.mu.Unlock()
	}
}

// errClass shortens an error to its kind, for the notes.
func errClass(err error) string {
	var re *resp.Error
	switch {
	case errors.As(err, &re):
		return re.Prefix()
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	default:
		return "connection"
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Stop stops the writer and closes its client.
func (w *RedisWriter) Stop() {
	close(w.stop)
	<-w.done
	w.cli.Close()
}

// Acks returns a copy of the acknowledged writes, in order.
func (w *RedisWriter) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// LastAck returns the latest acknowledged write.
func (w *RedisWriter) LastAck() (Ack, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acks) == 0 {
		return Ack{}, false
	}
	return w.acks[len(w.acks)-1], true
}

// Errors returns the number of failed writes and their kinds.
func (w *RedisWriter) Errors() (int, map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]int, len(w.errMsg))
	for k, v := range w.errMsg {
		m[k] = v
	}
	return w.errs, m
}

// WriteReport is what the acknowledged writes and the final master's list
// say about one trial.
type WriteReport struct {
	Acked int
	// Lost are the acknowledged values the final master does not have.
	Lost []Ack
	// Outage is the longest time between two consecutive acknowledged
	// writes (any, kept or lost) in the window: what the client saw.
	Outage               time.Duration
	OutageFrom, OutageTo time.Time
	// Failover is the time from the fault to the first acknowledged write
	// after the longest gap between two consecutive writes that the final
	// master kept: the end of the outage as the data sees it (a write
	// acknowledged by a cut-off master and lost later does not end it).
	Failover time.Duration
}

// AnalyzeWrites compares the acknowledged writes with the final master's
// list (its values) and measures the outage within [fault, to].
func AnalyzeWrites(acks []Ack, final []string, fault, to time.Time) WriteReport {
	have := make(map[int64]bool, len(final))
	for _, s := range final {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			have[v] = true
		}
	}
	r := WriteReport{Acked: len(acks)}
	var kept []Ack
	for _, a := range acks {
		if have[a.Val] {
			kept = append(kept, a)
		} else {
			r.Lost = append(r.Lost, a)
		}
	}
	r.Outage, r.OutageFrom, r.OutageTo = longestGap(acks, fault, to)
	_, _, end := longestGap(kept, fault, to)
	r.Failover = end.Sub(fault)
	return r
}

// longestGap returns the longest time between the ends of consecutive
// acknowledgements within [from, to], starting from the last one before
// from, and counting the tail up to to.
func longestGap(acks []Ack, from, to time.Time) (time.Duration, time.Time, time.Time) {
	prev := from
	for _, a := range acks {
		if a.End.Before(from) {
			prev = a.End
		}
	}
	var longest time.Duration
	var gs, ge time.Time
	for _, a := range acks {
		if a.End.Before(from) || a.End.After(to) {
			continue
		}
		if g := a.End.Sub(prev); g > longest {
			longest, gs, ge = g, prev, a.End
		}
		prev = a.End
	}
	if g := to.Sub(prev); g > longest {
		longest, gs, ge = g, prev, to
	}
	return longest, gs, ge
}

// MasterSampler asks every node's Redis every period whether it takes a
// write (SET harbormaster:probe:<node>; an OK is a yes, NOREPLICAS,
// READONLY, a timeout or a refused connection a no), each from inside that
// node's namespace, and records one lab.Sample per pass whose Holders are
// the nodes that took it. Two in one sample are two writable masters.
type MasterSampler struct {
	clis  map[string]*RedisConn
	nodes []string
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	samples []lab.Sample
	// unanswered[i] are the nodes whose Redis did not answer in time in
	// samples[i] (a timeout: frozen, or the observer itself stalled).
	unanswered [][]string
}

// StartMasterSampler starts sampling; addrs maps node names to their
// Redis address, spawn returns the node's Spawner.
func StartMasterSampler(addrs map[string]string, spawn func(node string) Spawner, every time.Duration) *MasterSampler {
	s := &MasterSampler{clis: map[string]*RedisConn{}, stop: make(chan struct{}), done: make(chan struct{})}
	for n, a := range addrs {
		s.clis[n] = NewRedisConn(a, spawn(n), 25*time.Millisecond)
		s.nodes = append(s.nodes, n)
	}
	slices.Sort(s.nodes)
	go s.run(every)
	return s
}

func (s *MasterSampler) run(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		at := time.Now()
		ok := make([]bool, len(s.nodes))
		late := make([]bool, len(s.nodes))
		var wg sync.WaitGroup
		for i, n := range s.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.clis[n].Do(context.Background(), "SET", "harbormaster:probe:"+n, strconv.FormatInt(at.UnixNano(), 10))
				ok[i] = err == nil
				late[i] = err != nil && errClass(err) == "timeout"
			}()
		}
		wg.Wait()
		smp := lab.Sample{At: at}
		var un []string
		for i, n := range s.nodes {
			if ok[i] {
				smp.Holders = append(smp.Holders, n)
			}
			if late[i] {
				un = append(un, n)
			}
		}
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.unanswered = append(s.unanswered, un)
		s.mu.Unlock()
	}
}

// Stop stops sampling and closes the clients.
func (s *MasterSampler) Stop() {
	close(s.stop)
	<-s.done
	for _, c := range s.clis {
		c.Close()
	}
}

// SamplesSince returns the samples taken at or after t.
func (s *MasterSampler) SamplesSince(t time.Time) []lab.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.samples, t, func(a lab.Sample, t time.Time) int { return a.At.Compare(t) })
	return slices.Clone(s.samples[i:])
}

// SamplesUnansweredSince returns the samples taken at or after t and, for
// each, the nodes whose Redis did not answer in time.
func (s *MasterSampler) SamplesUnansweredSince(t time.Time) ([]lab.Sample, [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.samples, t, func(a lab.Sample, t time.Time) int { return a.At.Compare(t) })
	return slices.Clone(s.samples[i:]), slices.Clone(s.unanswered[i:])
}

// Last returns the latest sample.
func (s *MasterSampler) Last() (lab.Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return lab.Sample{}, false
	}
	return s.samples[len(s.samples)-1], true
}

// DualMasters returns the longest time two Redis servers took writes in
// samples (a run of samples counts End-Start plus one period) and one
// description per such run.
func DualMasters(samples []lab.Sample, period time.Duration) (time.Duration, []string) {
	_, ivs := lab.DualHolder(samples)
	var longest time.Duration
	var out []string
	for _, iv := range ivs {
		d := iv.Duration() + period
		longest = max(longest, d)
		out = append(out, fmt.Sprintf("two Redis masters took writes: %v from %s to %s (%d samples, ~%s)",
			iv.Holders, stamp(iv.Start), stamp(iv.End), iv.Samples, ms(d)))
	}
	return longest, out
}
