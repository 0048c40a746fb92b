package sentinel

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// redisVersion is the Redis version whose Sentinel replies the server
// mirrors (HELLO, INFO).
const redisVersion = "7.0.0"

// Sentinel's defaults, reported where a real Sentinel reports its
// configuration; harbormaster's own timings are elsewhere.
const (
	downAfterMillis = "30000"
	failoverTimeout = "180000"
)

// sentinelCommands are the SENTINEL subcommands. Those that would change
// the configuration or start a failover are refused: harbormaster owns both.
var sentinelCommands = map[string]*command{
	"get-master-addr-by-name": {arity: 3, run: (*conn).getMasterAddr},
	"master":                  {arity: 3, run: (*conn).sentinelMaster},
	"masters":                 {arity: 2, run: (*conn).sentinelMasters},
	"replicas":                {arity: 3, run: (*conn).sentinelReplicas},
	"slaves":                  {arity: 3, run: (*conn).sentinelReplicas},
	"sentinels":               {arity: 3, run: (*conn).sentinelSentinels},
	"myid":                    {arity: 2, run: func(c *conn, _ []string) { c.w.bulk(c.s.cfg.RunID) }},
	"ckquorum":                {arity: 3, run: (*conn).ckquorum},
	"help":                    {arity: 2, run: help(sentinelHelp)},
	"failover":                {arity: 3, run: refuse("SENTINEL FAILOVER", "use harbormaster move to move the master role")},
	"set":                     {arity: -3, run: refuseConfig("SENTINEL SET")},
	"monitor":                 {arity: 6, run: refuseConfig("SENTINEL MONITOR")},
	"remove":                  {arity: 3, run: refuseConfig("SENTINEL REMOVE")},
	"reset":                   {arity: 3, run: refuseConfig("SENTINEL RESET")},
	"flushconfig":             {arity: 2, run: refuseConfig("SENTINEL FLUSHCONFIG")},
	"config":                  {arity: -3, run: refuseConfig("SENTINEL CONFIG")},
	"simulate-failure":        {arity: -3, run: refuseConfig("SENTINEL SIMULATE-FAILURE")},
	"is-master-down-by-addr":  {arity: 6, run: refuse("SENTINEL IS-MASTER-DOWN-BY-ADDR", "harbormaster's agents elect masters among themselves")},
}

func refuseConfig(what string) func(*conn, []string) {
	return refuse(what, "change the harbormaster configuration instead")
}

var sentinelHelp = []string{
	"SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"CKQUORUM <master-name>",
	"    Check if the current Sentinel configuration is able to reach the quorum",
	"    needed to failover a master and the majority needed to authorize the",
	"    failover.",
	"GET-MASTER-ADDR-BY-NAME <master-name>",
	"    Return the ip and port number of the master with that name.",
	"MASTER <master-name>",
	"    Show the state and info of the specified master.",
	"MASTERS",
	"    Show a list of monitored masters and their state.",
	"MYID",
	"    Return the ID of the Sentinel instance.",
	"REPLICAS <master-name>",
	"    Show a list of replicas for this master and their state.",
	"SENTINELS <master-name>",
	"    Show a list of Sentinel instances for this master and their state.",
	"HELP",
	"    Print this help.",
	"harbormaster owns the configuration and the failovers: CONFIG, FAILOVER,",
	"FLUSHCONFIG, MONITOR, REMOVE, RESET, SET and SIMULATE-FAILURE are refused.",
}

const errNoSuchMaster = "ERR No such master with that name"

// getMasterAddr is SENTINEL get-master-addr-by-name: the master's host and
// port, or a null when the name is unknown, no master is elected or the
// server steps aside.
func (c *conn) getMasterAddr(args []string) {
	m, ok := c.s.master(c, args[2])
	if !ok || m.Addr.IsZero() {
		c.w.nullArray()
		return
	}
	c.w.array(2)
	c.w.bulk(m.Addr.Host)
	c.w.bulk(strconv.Itoa(m.Addr.Port))
}

func (c *conn) sentinelMaster(args []string) {
	m, ok := c.s.master(c, args[2])
	if !ok {
		c.w.err(errNoSuchMaster)
		return
	}
	c.w.fields(c.masterFields(m, c.s.now()))
}

func (c *conn) sentinelMasters([]string) {
	var ms []Master
	if !c.s.stepsAsideFor(c) {
		ms = c.s.src.Masters()
	}
	now := c.s.now()
	c.w.array(len(ms))
	for _, m := range ms {
		c.w.fields(c.masterFields(m, now))
	}
}

func (c *conn) sentinelReplicas(args []string) {
	m, ok := c.s.master(c, args[2])
	if !ok {
		c.w.err(errNoSuchMaster)
		return
	}
	since, down := c.s.masterTimes(m.Name, c.s.now())
	c.w.array(len(m.Replicas))
	for _, r := range m.Replicas {
		c.w.fields(replicaFields(m, r, since, down))
	}
}

func (c *conn) sentinelSentinels(args []string) {
	if _, ok := c.s.master(c, args[2]); !ok {
		c.w.err(errNoSuchMaster)
		return
	}
	peers := c.s.sentinels(args[2])
	c.w.array(len(peers))
	for _, p := range peers {
		c.w.fields(sentinelFields(p))
	}
}

// ckquorum is SENTINEL ckquorum. Every sentinel the Source lists counts as
// usable, and the quorum is their majority, so the answer is always OK for a
// known master: harbormaster's own quorum is Raft's, not this one.
func (c *conn) ckquorum(args []string) {
	if _, ok := c.s.master(c, args[2]); !ok {
		c.w.err(errNoSuchMaster)
		return
	}
	usable := 1 + len(c.s.sentinels(args[2]))
	c.w.simple(fmt.Sprintf("OK %d usable Sentinels. Quorum and failover authorization can be reached", usable))
}

// quorum is the majority of the sentinels of a master: others and this one.
func quorum(others int) int { return (others+1)/2 + 1 }

func millis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// masterFields are SENTINEL master's fields, in Sentinel's order. Fields
// about Sentinel's own probing (pings, INFO refreshes) are 0: harbormaster
// probes differently. A down master has s-down-time and o-down-time, the
// time since the server first saw it down.
func (c *conn) masterFields(m Master, now time.Time) []string {
	others := len(c.s.sentinels(m.Name))
	since, downFor := c.s.masterTimes(m.Name, now)
	flags, lastOK := "master", "0"
	if isDown(m) {
		flags, lastOK = "s_down,o_down,master", millis(downFor)
	}
	kv := []string{
		"name", m.Name,
		"ip", m.Addr.Host,
		"port", strconv.Itoa(m.Addr.Port),
		"runid", "",
		"flags", flags,
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", lastOK,
		"last-ping-reply", "0",
	}
	if isDown(m) {
		kv = append(kv, "s-down-time", millis(downFor), "o-down-time", millis(downFor))
	}
	return append(kv,
		"down-after-milliseconds", downAfterMillis,
		"info-refresh", "0",
		"role-reported", "master",
		"role-reported-time", millis(since),
		"config-epoch", strconv.FormatUint(m.Epoch, 10),
		"num-slaves", strconv.Itoa(len(m.Replicas)),
		"num-other-sentinels", strconv.Itoa(others),
		"quorum", strconv.Itoa(quorum(others)),
		"failover-timeout", failoverTimeout,
		"parallel-syncs", "1",
	)
}

// replicaFields are one SENTINEL replicas entry's fields, in Sentinel's
// order. The replica's link is reported down while its master is.
func replicaFields(m Master, r Addr, since, downFor time.Duration) []string {
	linkStatus, masterHost := "ok", m.Addr.Host
	if isDown(m) {
		linkStatus = "err"
	}
	if m.Addr.IsZero() {
		masterHost = "?"
	}
	return []string{
		"name", r.String(),
		"ip", r.Host,
		"port", strconv.Itoa(r.Port),
		"runid", "",
		"flags", "slave",
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", "0",
		"last-ping-reply", "0",
		"down-after-milliseconds", downAfterMillis,
		"info-refresh", "0",
		"role-reported", "slave",
		"role-reported-time", millis(since),
		"master-link-down-time", millis(downFor),
		"master-link-status", linkStatus,
		"master-host", masterHost,
		"master-port", strconv.Itoa(m.Addr.Port),
		"slave-priority", "100",
		"slave-repl-offset", "0",
		"replica-announced", "1",
	}
}

// peerRunID stands in for another sentinel's run id, which the Source does
// not give: the SHA-1 of its address, stable and 40 hex characters like one.
func peerRunID(a Addr) string {
	sum := sha1.Sum([]byte(a.String()))
	return hex.EncodeToString(sum[:])
}

// sentinelFields are one SENTINEL sentinels entry's fields, in Sentinel's
// order.
func sentinelFields(a Addr) []string {
	id := peerRunID(a)
	return []string{
		"name", id,
		"ip", a.Host,
		"port", strconv.Itoa(a.Port),
		"runid", id,
		"flags", "sentinel",
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", "0",
		"last-ping-reply", "0",
		"down-after-milliseconds", downAfterMillis,
		"last-hello-message", "0",
		"voted-leader", "?",
		"voted-leader-epoch", "0",
	}
}

func (c *conn) role([]string) {
	ms := c.s.src.Masters()
	c.w.array(2)
	c.w.bulk("sentinel")
	c.w.array(len(ms))
	for _, m := range ms {
		c.w.bulk(m.Name)
	}
}

// infoSections are INFO's sections in their order.
var infoSections = []string{"server", "clients", "sentinel"}

// info is INFO [section ...]: server, clients and sentinel (all of them by
// default, for "all", "default" and "everything"); unknown sections are
// left out.
func (c *conn) info(args []string) {
	want := map[string]bool{}
	if len(args) == 1 {
		args = []string{"info", "default"}
	}
	for _, a := range args[1:] {
		switch a = strings.ToLower(a); a {
		case "all", "default", "everything":
			for _, s := range infoSections {
				want[s] = true
			}
		default:
			want[a] = true
		}
	}
	var parts []string
	for _, s := range infoSections {
		if !want[s] {
			continue
		}
		switch s {
		case "server":
			parts = append(parts, c.infoServer())
		case "clients":
			parts = append(parts, fmt.Sprintf("# Clients\r\nconnected_clients:%d\r\n", c.s.numClients()))
		case "sentinel":
			parts = append(parts, c.infoSentinel())
		}
	}
	c.w.bulk(strings.Join(parts, "\r\n"))
}

func (c *conn) infoServer() string {
	up := c.s.now().Sub(c.s.start)
	return fmt.Sprintf("# Server\r\nredis_version:%s\r\nredis_mode:sentinel\r\nprocess_id:%d\r\nrun_id:%s\r\ntcp_port:%d\r\nuptime_in_seconds:%d\r\nuptime_in_days:%d\r\n",
		redisVersion, os.Getpid(), c.s.cfg.RunID, c.s.cfg.Announce.Port, int64(up.Seconds()), int64(up.Hours()/24))
}

// infoSentinel is Sentinel's INFO section; a master's status is odown
// while it is down.
func (c *conn) infoSentinel() string {
	ms := c.s.src.Masters()
	var b strings.Builder
	fmt.Fprintf(&b, "# Sentinel\r\nsentinel_masters:%d\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n", len(ms))
	for i, m := range ms {
		status := "ok"
		if isDown(m) {
			status = "odown"
		}
		fmt.Fprintf(&b, "master%d:name=%s,status=%s,address=%s:%d,slaves=%d,sentinels=%d\r\n",
			i, m.Name, status, m.Addr.Host, m.Addr.Port, len(m.Replicas), 1+len(c.s.sentinels(m.Name)))
	}
	return b.String()
}
