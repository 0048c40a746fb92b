// Package checks runs the health checks an agent runs on its own node: the
// pull a client of the node's Harbor registry would make, HTTP(S) and TCP
// probes, a Redis PING (and replication role), and arbitrary programs. A
// role's spec names the checks that must be passing on its holder.
//
// # Semantics
//
// They are keepalived's vrrp_script semantics:
//
//   - interval: a probe every interval (default 10s). The first probe of a
//     check starts after a random jitter in [0, min(interval, 2s)), so the
//     checks of one node, and of many nodes restarted together, do not fire
//     together; later probes follow on a ticker, so delays do not accumulate.
//     A probe still running when the next one is due skips that tick: probes
//     of one check never overlap.
//   - timeout: a probe that has not finished after timeout (default 5s,
//     never more than the interval) is abandoned and counts as a failure;
//     for exec checks the program's whole process group is killed.
//   - fall: the check turns failing after fall consecutive failures
//     (default 1).
//   - rise: the check turns passing after rise consecutive successes
//     (default 1).
//
// A check starts unknown: neither passing nor failing. Its first verdict is
// reached after rise successes or fall failures, whichever comes first, and
// counts as a transition. Callers treat an unknown check as not passing: a
// node does not qualify for a role until its required checks have passed.
// A probe cut short because the runner stops is not counted.
//
// # Check types
//
//   - registry-pull: what `docker pull IMAGE` exercises, without Docker:
//     the manifest (and the platform's manifest when the tag names an
//     index), the config blob and every layer, each verified against its
//     digest and size. Blobs are streamed through sha256 and discarded.
//     Bearer-token and Basic authentication read the credentials file at
//     every probe.
//   - http, https: one request, redirects not followed; the status must be
//     in a range and the body (first 1 MiB) may have to contain a string.
//   - tcp: a connection is opened and closed.
//   - redis: PING (after AUTH when a password file is set) answered PONG,
//     and optionally the replication role.
//   - exec: a program (or a /bin/sh -c command line) exiting 0.
//
// Files named by a check (credentials, CA bundle, password) are read at
// every probe, so they can be rotated without restarting the agent; Validate
// only requires absolute paths. The secret ones (credentials_file,
// password_file) must be mode 0600 or 0400 and owned by the agent's user or
// root (internal/secretfile): a probe refuses any other, and so does the
// agent's config loader when the file exists at start.
package checks
