// Package sentinel is a server for the part of the Redis Sentinel protocol
// that clients use to find a master, answered from harbormaster's
// replicated state instead of Sentinel's own monitoring and elections.
//
// # Why
//
// Harbor 2.x (its sentinel_master_set setting) and most Redis client
// libraries locate the Redis master through Sentinel: they ask a sentinel
// for the master of a name ("mymaster"), connect to it, and subscribe to
// "+switch-master" to follow failovers. In a harbormaster cluster the
// agents decide which node's Redis is the master, so each agent runs this
// server and answers from the Raft state (a Source): clients configured for
// Sentinel follow harbormaster's elections, and there is no second,
// competing election.
//
// # What is answered
//
// RESP2, and RESP3 after HELLO 3 (maps, pushes, nulls). Requests are
// multibulk or inline (telnet). Replies match Redis 7.0 Sentinel's byte for
// byte where clients read them:
//
//   - PING [message] (in RESP2 subscribed mode as Redis answers it there);
//     AUTH [user] password and HELLO [2|3] [AUTH user pass] [SETNAME name]
//     with Redis's NOAUTH, WRONGPASS and NOPROTO errors; QUIT; RESET;
//     CLIENT ID, GETNAME, SETNAME, SETINFO; COMMAND (empty).
//   - SENTINEL get-master-addr-by-name (a null when the name is unknown or
//     no master is elected), masters, master, replicas (and slaves),
//     sentinels, myid, ckquorum, help.
//   - INFO (server, clients and sentinel sections) and ROLE.
//   - SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE on any channel. Only
//     "+switch-master" is ever published, by Server.Changed, in Sentinel's
//     format "<name> <old-ip> <old-port> <new-ip> <new-port>".
//
// Fields that describe Sentinel's own probing (ping times, INFO refreshes,
// the Redis run ids) are reported as 0 or empty; down-after-milliseconds,
// failover-timeout and parallel-syncs are Sentinel's defaults. Other
// sentinels' run ids are stand-ins derived from their addresses.
//
// While the Source says to step aside (its node holds the master role and
// another node runs a listener), the server knows no master: clients ask
// their other sentinels, so none keeps its +switch-master subscription on
// the master's node (see Source.StepAside).
//
// # What is refused
//
// harbormaster owns the configuration and the failovers: SENTINEL SET,
// MONITOR, REMOVE, RESET, FLUSHCONFIG, CONFIG, SIMULATE-FAILURE and
// IS-MASTER-DOWN-BY-ADDR, PUBLISH and SHUTDOWN reply an error saying so, and
// SENTINEL FAILOVER one pointing at `harbormaster move`. Any other command
// (data commands included) is "-ERR unknown command", as a real Sentinel
// replies.
//
// # Limits
//
// A request has at most 1024 arguments of at most 64 KiB each and 1 MiB in
// all (10 arguments of 16 KiB before authentication, as Redis); an inline
// request at most 64 KiB. A malformed or oversized request gets a protocol
// error and the connection is closed. At most Config.MaxConnections are
// open at once (default 1024); one more is answered "-ERR max number of
// clients reached" and closed. A connection that sends no request for
// Config.IdleTimeout (default 5 min) is closed, unless it is subscribed:
// clients hold a subscription for hours, and Redis never times out
// subscribers either. A connection subscribes to at most 64 channels and 64
// patterns of at most 128 bytes; a (P)SUBSCRIBE beyond is refused whole and
// the connection stays. Patterns are matched in time linear in the product
// of the lengths (never exponential, as Redis's own matcher can be), with
// no lock held that other clients need. A client
// that does not read is disconnected once a write blocks for 10 s, and a
// subscriber once 1 MiB of messages is pending: Changed never waits for a
// client.
package sentinel
