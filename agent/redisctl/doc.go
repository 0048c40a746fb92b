// Package redisctl is the Redis actuator and observer of one node: it reads
// the replication state of the node's redis-server (Replication), makes it
// the master of a role at an epoch (Promote) or a replica of another node's
// Redis (Follow), fences its writes (PauseWrites, Unpause), and waits for a
// replica to catch up before a planned switchover (WaitCaughtUp). Remote
// reaches another node's Redis, to demote a lost master that still answers.
// Actuators never decide: the agent calls these with the state the log
// committed.
//
// # The write fence
//
// A master must stop taking writes before its lease ends (S3), and a write
// it acknowledges after that may be lost or diverge (S7). PauseWrites arms
// the fence by raising min-replicas-to-write above any possible number of
// replicas (CONFIG SET min-replicas-to-write <operator's value + 2^30>).
// From the next command on, Redis refuses every write of a client at once
// with "-NOREPLICAS Not enough good replicas to write.": plain writes, a
// transaction (the write in MULTI is refused and EXEC answers EXECABORT)
// and scripts that write. Nothing is queued, the fence does not lift
// itself, replication to replicas goes on, and it has no effect while the
// server is a replica, so it can stay armed there: Follow arms it before
// REPLICAOF, and a replica promoted by anyone but Promote (an operator, a
// leftover Sentinel) refuses writes until Promote or Unpause lifts it. The
// state lives in Redis (CONFIG GET tells it, Replication.Paused reports
// it), so a restarted agent or a Remote client sees and lifts it, and
// Unpause restores the operator's value exactly.
//
// CLIENT PAUSE WRITE was the first candidate. Redis 7.0.15 was observed to
// do this (pinned by the tests of pause_test.go):
//   - A write sent during the pause is blocked, not refused: queued without
//     a reply. Reads are served. The master keeps serving its replicas: a
//     replica attached during the pause completes its full sync.
//   - When the pause ends by itself (or CLIENT UNPAUSE), each queued command
//     is processed from scratch. On a server still master the write is
//     executed and acknowledged, as late as the pause was long.
//   - REPLICAOF host port on a paused master is accepted at once. The
//     queued writes stay blocked while the pause lasts. The server
//     completes its full sync from the new master during the pause but does
//     not apply the command stream after it until the pause ends: its
//     master link is paused like any client (only its own replicas are
//     exempt), so it falls behind. When the pause ends, the queued writes
//     are refused with READONLY: neither executed nor acknowledged.
//   - The min-replicas check precedes the pause in Redis's command
//     processing: with the fence armed, a write is refused at once even
//     during a pause, and a write queued by a pause is refused (NOREPLICAS)
//     when the pause ends.
//
// So CLIENT PAUSE is a safe fence only if the demotion always comes before
// the pause ends. It is bounded in time by design: if the agent is killed,
// frozen or late, the pause ends on a server that is still master and the
// writes held since the lease ended are executed and acknowledged by a
// node that no longer holds the role, while another master takes writes:
// exactly the lost writes S7 forbids. It also leaves clients hanging
// instead of failing fast so they can reconnect through the VIP, and a
// server demoted while paused stops applying its new master's stream. The
// min-replicas fence fails closed instead: it lasts until Promote or
// Unpause, so PauseWrites takes no duration. Unpause (and so Promote) also
// sends CLIENT UNPAUSE, so a pause left by someone else (an interrupted
// FAILOVER, an operator) cannot block a new master.
//
// What the fence does not cover:
//   - Writes acknowledged before it was armed and not yet replicated:
//     replication is asynchronous. A planned move fences the old master,
//     reads its offset and WaitCaughtUp on the new one before Promote; a
//     failover after a crash picks the replica with the highest offset.
//   - A Redis restart: CONFIG SET is not written to redis.conf, so a
//     restarted server comes up with the operator's value, as a master
//     unless redis.conf says replicaof. Operators should put
//     "min-replicas-to-write 1073741824" (2^30, plus their own value) in
//     redis.conf: the server then starts fenced and the agent's Promote or
//     Unpause lifts it to the operator's value. Replication.RunID changes
//     on a restart, so the agent can tell.
//   - A master whose agent died while the Redis still serves clients: no
//     timer inside Redis fences it. An operator's min-replicas-to-write 1
//     with min-replicas-max-lag N makes such a master refuse writes about N
//     seconds (whole seconds) after it loses all its replicas; the fence
//     keeps and restores that setting, and Promote still records its epoch
//     on a new master no replica follows yet: it sets the value to 0
//     around its SET, all sent in one write, which Redis runs before it
//     serves another client (a client write could fall in between only if
//     the commands arrived in two reads).
//   - min-replicas-max-lag 0 disables the min-replicas check; PauseWrites
//     sets it to 10 (Redis's default) in that case and Unpause leaves it.
//
// # The epoch
//
// Promote records the role's fencing epoch in the key
// harbormaster:epoch:<role> (EpochKey), a decimal string, after the fence
// is lifted. It is an ordinary key, so it replicates: clients read it on
// the master or on any replica, and a client that wants end-to-end fencing
// writes with a script that first checks the key still holds the epoch it
// knows. Promote refuses (StaleEpochError, before changing anything) an
// epoch lower than the one this Redis's data already records.
//
// # Replication state
//
// Replication reads INFO replication and INFO server. Offset is
// master_repl_offset on a master and slave_repl_offset (processed, not only
// read) on a replica; a replica keeps its offset when its master dies.
// Offsets compare only within one replication history (same ReplID). The
// slaveN lines of a master are in Replicas.
//
// # Requirements
//
// Redis 6.2 or later (CLIENT UNPAUSE; tested with 7.0.15), with CONFIG,
// REPLICAOF, INFO and CLIENT not renamed. With ACLs, the agent's user needs
// ACLRules. Replicas authenticate to their master with masterauth (and
// masteruser), which the operator configures; every node's Redis must
// accept the same credentials for Remote.
//
// # The client
//
// Client speaks RESP2 over TCP, or TLS with CAFile; it authenticates with
// PasswordFile at each connect. It is a small client of its own rather
// than go-redis: a call's ctx bounds it completely (its deadline and its
// cancellation interrupt a read in progress; go-redis follows only
// deadlines, and only with ContextTimeoutEnabled), it retries only a kept
// connection found closed (go-redis retries three times by default), it
// starts no goroutines, it sends nothing but AUTH on connect (go-redis
// sends HELLO, and CLIENT SETINFO and CLIENT MAINT_NOTIFICATIONS, which
// Redis 7.0 does not know and an ACL user would need), and it adds no
// dependency. Its RESP2 codec, internal/resp, is the one the agent's redis
// check (agent/checks) and the Sentinel server (agent/sentinel) use.
package redisctl
