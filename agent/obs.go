package agent

import (
	"fmt"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/harbormaster/harbormaster/fsm"
)

// obsMetrics are the agent's event metrics (docs/operations.md "Metrics"):
// counters and histograms updated where the events happen, unlike the
// collector's gauges, which are read from the state at scrape time.
type obsMetrics struct {
	failovers     *prometheus.CounterVec
	failoverPhase *prometheus.HistogramVec
	renewRTT      prometheus.Histogram
	renewAge      prometheus.Histogram
	timingWarning prometheus.Gauge
	leaseLen      prometheus.Gauge
	lapses        prometheus.Counter
	checkRuns     *prometheus.CounterVec
	checkTime     *prometheus.HistogramVec
	leaderChanges prometheus.Counter
	storeErrors   prometheus.Counter
	reconcile     prometheus.Histogram
	proposed      prometheus.Counter

	mu       sync.Mutex
	reported map[string]uint64 // role -> last epoch whose failover was counted
}

// failoverBuckets suit failovers of 5 ms to 10 s.
var failoverBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newObsMetrics(node string, leaseLen time.Duration) *obsMetrics {
	cl := prometheus.Labels{"node": node}
	m := &obsMetrics{reported: map[string]uint64{},
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "harbormaster_failovers_total", ConstLabels: cl,
			Help: "Roles this node took over, counted when it started acting for them, by cause (first, lease, check, preempt, operator, drain, shutdown, spec, data_loss)."},
			[]string{"role", "type", "cause"}),
		failoverPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "harbormaster_failover_duration_seconds", ConstLabels: cl,
			Help:    "On the new holder, from the fault (the assignment's detected time) to each phase: decided, acted, announced.",
			Buckets: failoverBuckets}, []string{"role", "type", "phase"}),
		renewRTT: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "harbormaster_lease_renewal_rtt_seconds", ConstLabels: cl,
			Help:    "Round trip of one quorum-lease renewal: from sending it to the grant that made the majority.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		renewAge: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "harbormaster_lease_renewal_age_seconds", ConstLabels: cl,
			Help:    "How much of the lease had run when a majority renewed it: from the send of the previous renewal a majority granted to the grant that made this one's majority. The lease lapses when it reaches harbormaster_lease_seconds.",
			Buckets: []float64{.01, .025, .05, .075, .1, .15, .2, .25, .35, .5, .75, 1, 2.5, 5}}),
		timingWarning: prometheus.NewGauge(prometheus.GaugeOpts{Name: "harbormaster_lease_timing_warning", ConstLabels: cl,
			Help: "1 while the lease renewals are too slow for the timing profile (p99 of the renewal age over 30 s above half the lease; cleared under 40 %); see docs/troubleshooting.md."}),
		leaseLen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "harbormaster_lease_seconds", ConstLabels: cl,
			Help: "The timing profile's lease length."}),
		lapses: prometheus.NewCounter(prometheus.CounterOpts{Name: "harbormaster_lease_lapses_total", ConstLabels: cl,
			Help: "Times this node's own quorum lease ran out while it was running (not renewed in time; not counted while fenced)."}),
		checkRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "harbormaster_check_runs_total", ConstLabels: cl,
			Help: "Probes run, by check and result (pass, fail)."}, []string{"check", "result"}),
		checkTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "harbormaster_check_duration_seconds", ConstLabels: cl,
			Help:    "How long each probe took.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"check"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "harbormaster_raft_leader_changes_total", ConstLabels: cl,
			Help: "Raft leadership changes this node observed."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "harbormaster_store_errors_total", ConstLabels: cl,
			Help: "Raft store (log, stable, snapshot) write errors."}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "harbormaster_reconcile_duration_seconds", ConstLabels: cl,
			Help:    "On the leader, one reconcile pass: the voters' lease answers, the placement plan and its proposals until committed.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		proposed: prometheus.NewCounter(prometheus.CounterOpts{Name: "harbormaster_reconcile_commands_total", ConstLabels: cl,
			Help: "Commands the leader's reconcile passes proposed (assignments, releases), rejected ones included."}),
	}
	m.leaseLen.Set(leaseLen.Seconds())
	return m
}

func (m *obsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.failovers, m.failoverPhase, m.renewRTT, m.renewAge, m.timingWarning, m.leaseLen, m.lapses, m.checkRuns,
		m.checkTime, m.leaderChanges, m.storeErrors, m.reconcile, m.proposed}
}

// reconciled is the coordinator's report of one reconcile pass
// (coordinator.Config.OnReconcile).
func (m *obsMetrics) reconciled(took time.Duration, proposed int) {
	m.reconcile.Observe(took.Seconds())
	m.proposed.Add(float64(proposed))
}

func (m *obsMetrics) probe(check string, passed bool, took time.Duration) {
	result := "fail"
	if passed {
		result = "pass"
	}
	m.checkRuns.WithLabelValues(check, result).Inc()
	m.checkTime.WithLabelValues(check).Observe(took.Seconds())
}

// failoverActed is the actuators' report that this node started acting
// for role at epoch (acted: address added, service started, Redis
// promoted; announced: the first gratuitous ARP, or acted). The first
// report of an epoch this node holds counts the failover, observes its
// phases from the assignment's detected time and logs it, once.
func (a *Agent) failoverActed(role string, epoch uint64, acted, announced time.Time) {
	st := a.State()
	as := st.Assignment(role)
	if as.Holder != a.cfg.NodeID || as.Epoch != epoch {
		return
	}
	m := a.obs
	m.mu.Lock()
	if m.reported[role] >= epoch {
		m.mu.Unlock()
		return
	}
	m.reported[role] = epoch
	m.mu.Unlock()
	typ := "unknown"
	if r, ok := st.Spec.Role(role); ok {
		typ = string(r.Type)
	}
	cause := as.Cause
	if cause == "" { // assigned by an agent without causes
		cause = fsm.CauseFirst
		if as.LostBy != "" {
			cause = fsm.CauseLease
		}
	}
	m.failovers.WithLabelValues(role, typ, cause).Inc()
	args := []any{"role", role, "type", typ, "cause", cause, "epoch", epoch}
	if as.Detected > 0 {
		detected := time.UnixMilli(as.Detected)
		decided := time.UnixMilli(as.Since).Sub(detected)
		for _, p := range []struct {
			phase string
			d     time.Duration
		}{{"decided", decided}, {"acted", acted.Sub(detected)}, {"announced", announced.Sub(detected)}} {
			m.failoverPhase.WithLabelValues(role, typ, p.phase).Observe(max(p.d, 0).Seconds())
		}
		args = append(args, "detected_ms", 0, "decided_ms", decided.Milliseconds(),
			"acted_ms", acted.Sub(detected).Milliseconds(), "announced_ms", announced.Sub(detected).Milliseconds())
	}
	if as.LostBy != "" && as.LostBy != a.cfg.NodeID {
		args = append(args, "prev", as.LostBy)
	}
	a.log.Info("failover", args...)
}

// watchLeader counts the leadership changes this node observes until stop
// is closed.
func (a *Agent) watchLeader(stop <-chan struct{}) {
	ch := make(chan raft.Observation, 8)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	a.raft.RegisterObserver(obs)
	defer a.raft.DeregisterObserver(obs)
	var last raft.ServerID
	for {
		select {
		case <-stop:
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID != last && lo.LeaderID != "" {
				a.obs.leaderChanges.Inc()
			}
			last = lo.LeaderID
		}
	}
}

// raftSink is the process's go-metrics Prometheus sink, installed once as
// go-metrics' global sink: hashicorp/raft emits its metrics
// (raft_commitTime, raft_apply, ...) through the global, so one process
// has one sink whatever the number of agents it runs (tests run several).
// Each agent's registry collects it; the figures are the process's.
var raftSink struct {
	once sync.Once
	sink *gmprom.PrometheusSink
	err  error
}

// raftMetricsBlocked are the go-metrics keys raft emits on every
// heartbeat (25-50 a second per follower at lan): six summaries on each
// follower, one per peer on the leader, a tenth of an idle agent's CPU.
// A heartbeat's round trip is in raft_leader_lastContact; the transport's
// plumbing (raft_net_*) tells an operator nothing the others do not. The
// longest prefix decides: raftMetricsKept keeps the log-carrying parts of
// raft.rpc.appendEntries.
var (
	raftMetricsBlocked = []string{"raft.net.", "raft.rpc.processHeartbeat", "raft.replication.heartbeat", "raft.rpc.appendEntries"}
	raftMetricsKept    = []string{"raft.rpc.appendEntries.storeLogs", "raft.rpc.appendEntries.processLogs"}
)

func raftMetricsSink() (prometheus.Collector, error) {
	raftSink.once.Do(func() {
		// Its own registry, not Prometheus's global one: the agents'
		// registries collect it.
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: prometheus.NewRegistry(),
			Expiration: 10 * time.Minute})
		if err != nil {
			raftSink.err = fmt.Errorf("go-metrics Prometheus sink: %w", err)
			return
		}
		conf := gometrics.DefaultConfig("")
		conf.EnableHostname, conf.EnableHostnameLabel, conf.EnableRuntimeMetrics = false, false, false
		conf.BlockedPrefixes, conf.AllowedPrefixes = raftMetricsBlocked, raftMetricsKept
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			raftSink.err = fmt.Errorf("go-metrics global: %w", err)
			return
		}
		raftSink.sink = sink
	})
	return raftSink.sink, raftSink.err
}
