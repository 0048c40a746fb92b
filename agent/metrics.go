package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/version"
	"github.com/harbormaster/harbormaster/spec"
)

// collector renders the agent's state as Prometheus metrics at scrape time,
// so the figures are never stale and nothing is updated on hot paths.
type collector struct {
	a          *Agent
	leader     *prometheus.Desc
	term       *prometheus.Desc
	applied    *prometheus.Desc
	commit     *prometheus.Desc
	holder     *prometheus.Desc
	epoch      *prometheus.Desc
	alive      *prometheus.Desc
	leaseAge   *prometheus.Desc
	leaseLeft  *prometheus.Desc
	specVer    *prometheus.Desc
	conflicts  *prometheus.Desc
	eventsSeen *prometheus.Desc
	checkUp    *prometheus.Desc
	checkFails *prometheus.Desc
	svcActive  *prometheus.Desc
	fenced     *prometheus.Desc
	viewErrs   *prometheus.Desc
	leaseDrops *prometheus.Desc
	leaseDgram *prometheus.Desc
	quorum     *prometheus.Desc
	quorumLost *prometheus.Desc
	// Redis (docs/redis.md).
	replInSync  *prometheus.Desc
	replLagB    *prometheus.Desc
	replLagS    *prometheus.Desc
	redisSynced *prometheus.Desc
	redisBehind *prometheus.Desc
	redisVacant *prometheus.Desc
	redisWarns  *prometheus.Desc
	buildInfo   *prometheus.Desc
}

func newCollector(a *Agent) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("harbormaster_"+name, help, labels, prometheus.Labels{"node": a.cfg.NodeID})
	}
	return &collector{a: a,
		leader:     d("raft_leader", "1 if this node is the Raft leader."),
		term:       d("raft_term", "Current Raft term."),
		applied:    d("raft_applied_index", "Last log index applied to the state."),
		commit:     d("raft_commit_index", "Last committed log index known here."),
		holder:     d("role_holder", "1 for the node holding each role, per this node's state.", "role", "holder"),
		epoch:      d("role_epoch", "Fencing epoch of each role of the spec (0 before its first placement).", "role"),
		alive:      d("member_alive", "1 if the member's lease is live, as seen by this node.", "member"),
		leaseAge:   d("member_lease_granted_seconds", "How long this node's grant of the member's lease still runs.", "member"),
		leaseLeft:  d("lease_remaining_seconds", "This node's own quorum lease remaining, by its own clock."),
		specVer:    d("spec_version", "Version of the cluster spec."),
		conflicts:  d("vip_conflicts_total", "Probes of a VIP held elsewhere that a MAC other than the holder's answered."),
		eventsSeen: d("last_event_seq", "Sequence number (log index) of the last event recorded."),
		checkUp:    d("check_passing", "1 if this node's check is passing (its local verdict, fall/rise applied); 0 if failing or no verdict yet.", "check", "type"),
		checkFails: d("check_consecutive_failures", "Current run of consecutive failed probes of this node's check.", "check", "type"),
		svcActive:  d("service_active", "1 if this node runs the service role's active instance.", "role"),
		fenced:     d("fenced", "1 while this node lets its lease lapse after a service stop it could not confirm."),
		viewErrs:   d("lease_view_errors_total", "Leases answers of a voter that failed (the voter counted against every verdict of that round).", "voter"),
		quorum:     d("quorum", "1 while this node has quorum (a known leader and its own quorum lease); 0 once it has lacked it longer than a leader failover takes."),
		quorumLost: d("quorum_lost_seconds", "How long this node has been without quorum (0 while it has quorum); counted from the start of the lack."),
		leaseDgram: d("lease_datagrams_total", "Lease datagrams this node sent and received (requests and replies; received ones counted before any drop), by direction (sent, received).", "direction"),
		leaseDrops: d("lease_datagrams_dropped_total", "Lease datagrams this node dropped, by reason (bad-mac, unknown-key, replay, non-member, ttl, generation, ...).", "reason"),
		replInSync: d("redis_replica_in_sync", "1 if this node's Redis, a master, counts the replica as in sync (online, acknowledged within min-replicas-max-lag), as last reported.", "replica"),
		replLagB:   d("redis_replica_lag_bytes", "How far this node's master Redis is ahead of the replica's acknowledged offset, as last reported.", "replica"),
		replLagS:   d("redis_replica_lag_seconds", "How long ago this node's master Redis was at the replica's acknowledged offset, as last reported (replicas acknowledge every second).", "replica"),
		redisSynced: d("redis_member_synced", "1 if the member's Redis holds the redis-master role's replication history (it may be promoted without losing what the last master acknowledged, up to redis_member_behind_bytes).",
			"role", "member"),
		redisBehind: d("redis_member_behind_bytes", "Bytes of the role's history, up to the last master's last reported offset, that the member's Redis lacks (synced members only).", "role", "member"),
		redisVacant: d("redis_role_vacant", "1 while the redis-master role stays vacant because no live candidate's Redis has synced with the lost master (unsynced_promotion).", "role"),
		buildInfo:   d("build_info", "1, labelled with the running build's version, commit and Go version.", "version", "commit", "goversion"),
		redisWarns:  d("redis_config_warnings", "Number of redis-config warnings about this node's Redis settings (harbormaster status lists them)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.term, c.applied, c.commit, c.holder, c.epoch, c.alive,
		c.leaseAge, c.leaseLeft, c.specVer, c.eventsSeen, c.conflicts, c.checkUp, c.checkFails, c.svcActive, c.fenced,
		c.viewErrs, c.leaseDrops, c.leaseDgram, c.quorum, c.quorumLost, c.replInSync, c.replLagB, c.replLagS, c.redisSynced, c.redisBehind,
		c.redisVacant, c.redisWarns, c.buildInfo} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	st := a.State()
	now := time.Now()
	g := prometheus.GaugeValue
	ch <- prometheus.MustNewConstMetric(c.leader, g, b2f(a.raft.State() == raft.Leader))
	ch <- prometheus.MustNewConstMetric(c.term, g, float64(a.raft.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(c.applied, g, float64(a.raft.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(c.commit, g, float64(a.raft.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(c.specVer, g, float64(st.SpecVersion))
	ch <- prometheus.MustNewConstMetric(c.eventsSeen, g, float64(st.EventSeq))
	var conflicts int64
	if a.vips != nil {
		conflicts = a.vips.Conflicts()
	}
	ch <- prometheus.MustNewConstMetric(c.conflicts, prometheus.CounterValue, float64(conflicts))
	// role_epoch names exactly the spec's roles (0 before a role's first
	// placement), so "a role without a holder" can be told from it: a role
	// that left the spec is not reported, one never placed is.
	for _, r := range st.Spec.Roles {
		ch <- prometheus.MustNewConstMetric(c.epoch, g, float64(st.Assignment(r.Name).Epoch), r.Name)
	}
	for name, as := range st.Assignments {
		if as.Holder != "" {
			ch <- prometheus.MustNewConstMetric(c.holder, g, 1, name, as.Holder)
		}
	}
	view := a.leases.Grants().Snapshot(now)
	for id := range st.Nodes {
		_, live := view.Live(id)
		ch <- prometheus.MustNewConstMetric(c.alive, g, b2f(live), id)
		if gv, ok := view.Nodes[id]; ok {
			ch <- prometheus.MustNewConstMetric(c.leaseAge, g, max(gv.Remaining.Seconds(), 0), id)
		}
	}
	left := 0.0
	if _, _, until := a.leases.Lease(now); !until.IsZero() {
		left = max(until.Sub(now).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.leaseLeft, g, left)
	if a.checks != nil {
		for _, s := range a.checks.States() {
			ch <- prometheus.MustNewConstMetric(c.checkUp, g, b2f(s.Known && s.Passing), s.Name, s.Type)
			ch <- prometheus.MustNewConstMetric(c.checkFails, g, float64(s.Failed), s.Name, s.Type)
		}
	}
	if a.services != nil {
		active := map[string]bool{}
		for _, r := range a.services.Active() {
			active[r] = true
		}
		for _, name := range a.services.Roles() {
			ch <- prometheus.MustNewConstMetric(c.svcActive, g, b2f(active[name]), name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.fenced, g, b2f(a.fenced()))
	lostFor := 0.0
	since, lost := a.QuorumLost()
	if lost {
		lostFor = max(now.Sub(since).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.quorum, g, b2f(!lost))
	ch <- prometheus.MustNewConstMetric(c.quorumLost, g, lostFor)
	for voter, n := range a.leases.ViewErrors() {
		ch <- prometheus.MustNewConstMetric(c.viewErrs, prometheus.CounterValue, float64(n), voter)
	}
	for reason, n := range a.leases.Drops() {
		ch <- prometheus.MustNewConstMetric(c.leaseDrops, prometheus.CounterValue, float64(n), reason)
	}
	sent, received := a.leases.Datagrams()
	ch <- prometheus.MustNewConstMetric(c.leaseDgram, prometheus.CounterValue, float64(sent), "sent")
	ch <- prometheus.MustNewConstMetric(c.leaseDgram, prometheus.CounterValue, float64(received), "received")
	c.collectRedis(ch, st)
	bi := version.Get()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, g, 1, bi.Version, bi.Commit, bi.GoVersion)
}

// collectRedis renders the Redis replication state: this node's own Redis
// (its replicas when master, its warnings) and, per redis-master role, who
// holds its history and whether it is vacant.
func (c *collector) collectRedis(ch chan<- prometheus.Metric, st *fsm.State) {
	g := prometheus.GaugeValue
	if own, ok := st.Redis[c.a.cfg.NodeID]; ok {
		ch <- prometheus.MustNewConstMetric(c.redisWarns, g, float64(len(own.Warnings)))
		for _, r := range own.Replicas {
			name := r.Node
			if name == "" {
				name = r.Addr
			}
			ch <- prometheus.MustNewConstMetric(c.replInSync, g, b2f(r.InSync), name)
			ch <- prometheus.MustNewConstMetric(c.replLagB, g, float64(r.LagBytes), name)
			ch <- prometheus.MustNewConstMetric(c.replLagS, g, float64(r.LagMillis)/1000, name)
		}
	}
	for _, r := range st.Spec.Roles {
		if r.Type != spec.TypeRedisMaster {
			continue
		}
		a := st.Assignment(r.Name)
		ch <- prometheus.MustNewConstMetric(c.redisVacant, g, b2f(a.Unsynced != ""), r.Name)
		h := st.RedisHistoryOf(a)
		for id := range st.Redis {
			synced, behind := st.RedisSynced(h, id)
			ch <- prometheus.MustNewConstMetric(c.redisSynced, g, b2f(synced), r.Name, id)
			if synced && behind >= 0 {
				ch <- prometheus.MustNewConstMetric(c.redisBehind, g, float64(behind), r.Name, id)
			}
		}
	}
}

func (a *Agent) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(a), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(a.obs.collectors()...)
	if sink, err := raftMetricsSink(); err != nil {
		a.log.Warn("Raft internals not exported", "err", err)
	} else {
		prometheus.WrapRegistererWith(prometheus.Labels{"node": a.cfg.NodeID}, reg).MustRegister(sink)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if a.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Liveness(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		msg := "ok: running, data_dir writable"
		if !a.isReady() {
			msg += " (starting: " + a.raft.State().String() + ")"
		}
		io.WriteString(w, msg+"\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		msg, err := a.Readiness()
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready: "+msg+"\n")
	})
	return mux
}

// MetricsHandler is the handler served on metrics_addr: /metrics, /healthz,
// /readyz (and /debug/pprof/ with pprof). Each call builds a new one.
func (a *Agent) MetricsHandler() http.Handler { return a.metricsHandler() }

// Liveness returns why the agent is not healthy, or nil: it answers (the
// process runs) and its store is writable (storeHealthy). It says nothing of
// quorum: a node cut off from the others is healthy, and restarting it
// would not help (Readiness says that).
func (a *Agent) Liveness() error {
	if a.raft.State() == raft.Shutdown {
		return errors.New("raft is shut down")
	}
	return a.storeHealthy()
}

// Readiness returns nil and a one-line summary when this node can act for
// roles now: it is ready (registered, caught up), a member of the Raft
// configuration, knows a leader and holds a valid quorum lease of its own.
// Otherwise it returns why not; a lost quorum first, with since when.
func (a *Agent) Readiness() (string, error) {
	now := time.Now()
	ok, why := a.hasQuorum(now)
	if since, lost := a.QuorumLost(); lost && !ok {
		return "", errors.New("no quorum since " + since.UTC().Format(time.RFC3339) + ": " + why)
	}
	if !a.isReady() {
		return "", errors.New("starting: not registered or not caught up with the log yet")
	}
	if !a.inConfig() {
		return "", errors.New("not a member of the Raft configuration")
	}
	if !ok {
		return "", errors.New(why)
	}
	_, leader := a.raft.LeaderWithID()
	_, _, until := a.leases.Lease(now)
	return fmt.Sprintf("leader %s, own quorum lease valid for %s", leader, until.Sub(now).Round(time.Millisecond)), nil
}
