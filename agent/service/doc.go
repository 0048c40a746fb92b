// Package service is the service actuator: it starts, stops and queries the
// single active instance of an active/standby service (Notary, Clair, Trivy)
// on the node that holds the matching `service` role. It decides nothing; the
// agent calls Start when the node acquires the role and Stop before it
// releases it.
//
// # Modes
//
// In hooks mode (the default) the node's config gives argv lists for start,
// stop and, optionally, status. Each is run directly (no shell), with "/" as
// its working directory, /dev/null as stdin, and in a new process group of
// its own (its pgid is its pid). Its environment is built by
// internal/childenv, not inherited: PATH (a fixed default unless the env
// list sets it; a bare program name is looked up there), the config's env
// list (NAME=value, or NAME passing the agent's value through), then
// HARBORMASTER_ROLE, HARBORMASTER_NODE and HARBORMASTER_EPOCH (decimal). A hook succeeds by
// exiting 0; the status hook follows the LSB convention: exit 0 means active,
// exit 3 inactive, anything else is an error. A failing hook's error carries
// its exit status and the last 4 KiB of its combined stdout and stderr.
//
// A start hook normally launches a daemon and exits. The daemon stays in the
// hook's process group and is left running: groups are killed only on
// timeout. Start returns as soon as the hook exits, even when the daemon still
// holds the hook's stdout or stderr: the output is read for 200 ms more, then
// the pipe is closed. Daemons should therefore redirect their output (to
// /dev/null, a log file or the journal): one that writes to the inherited
// pipe later gets EPIPE, or dies of SIGPIPE.
//
// In systemd mode the actuator drives one unit through systemd's D-Bus API.
// Start writes the runtime drop-in
// /run/systemd/system/<unit>.d/50-harbormaster.conf setting the same three
// variables in the unit's Environment=, reloads systemd, starts the unit and
// waits for the job's result. Stop stops the unit and waits likewise; a unit
// that is inactive or not loaded counts as stopped. Status reads the unit's
// ActiveState.
//
// # Timeouts
//
// Every call is bounded by its context; the agent sets the role's start or
// stop timeout there. When the context ends (deadline or cancellation) before
// a hook exits, the hook's whole process group is killed with SIGKILL, so a
// hung hook and the children it started die with it; process groups of
// earlier hooks, such as the daemon a start hook launched, are not touched. In
// systemd mode the job is left to systemd (whose own TimeoutStopSec= applies).
// Either way the error wraps ErrTimeout, and for a Stop that means the service
// may still be running: the agent must fence itself rather than release the
// role, or two nodes could run the active instance at once.
package service
