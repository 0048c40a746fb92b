package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, the same
// directory iproute2 uses, so that `ip netns list/exec` sees ours.
const netnsDir = "/run/netns"

// nsPath returns the bind-mount path of the named namespace.
func nsPath(name string) string { return filepath.Join(netnsDir, name) }

// onThread runs fn on a fresh OS thread that is locked for the whole life of
// the goroutine and never unlocked: when the goroutine returns, the Go runtime
// destroys the thread. fn may therefore setns or unshare freely; no other
// goroutine, and in particular not the caller, ever runs on a thread whose
// namespace fn changed. Threads the runtime spawns while fn runs are cloned
// from the runtime's template thread (LockOSThread marks the thread as having
// external state), so they stay in the original namespace too.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never destroyed (the runtime would
			// wedge it, still inside the namespace, and /proc/self/ns/net
			// would then name the lab). Keep it locked here, so the
			// nested goroutine runs on another thread, and give it back.
			errc <- onThread(fn)
			runtime.UnlockOSThread()
			return
		}
		// Deliberately no UnlockOSThread: the thread dies with the goroutine.
		errc <- fn()
	}()
	return <-errc
}

// enterNS moves the calling thread into the named namespace. Call it only
// from inside onThread.
func enterNS(name string) error {
	fd, err := unix.Open(nsPath(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter namespace %s: %w", name, err)
	}
	return nil
}

// inNS runs fn on a discarded thread inside the named namespace. Sockets and
// netlink handles fn creates stay bound to that namespace after it returns.
func inNS(name string, fn func() error) error {
	return onThread(func() error {
		if err := enterNS(name); err != nil {
			return err
		}
		return fn()
	})
}

// newRouteHandle opens a netlink route handle in the calling thread's
// namespace (call it inside inNS), with a socket timeout so a wedged kernel
// cannot hang the lab forever.
func newRouteHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	return h, nil
}

// createNS creates and names a new network namespace, disables IPv6 in it (the
// lab is IPv4 only, and link-local IPv6 addresses would trip GuardHere), sets
// its loopback up and returns a route handle bound to it. It fails with an
// error wrapping fs.ErrExist if the name is taken; it never touches a
// namespace it did not create.
func createNS(name string) (*netlink.Handle, error) {
	if err := ensureMountDir(netnsDir); err != nil {
		return nil, err
	}
	path := nsPath(name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()
	var h *netlink.Handle
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount: %w", err)
		}
		for _, key := range []string{"all", "default"} {
			// /proc/sys/net follows the opening thread's namespace.
			p := "/proc/sys/net/ipv6/conf/" + key + "/disable_ipv6"
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disable ipv6: %w", err)
			}
		}
		var err error
		if h, err = newRouteHandle(); err != nil {
			return err
		}
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			h.Close()
			h = nil
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
	if err != nil {
		_ = deleteNS(name) // we created the file above, so it is ours
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	return h, nil
}

// ensureMountDir makes dir a mount point of its own with shared propagation,
// as `ip netns add` does for /run/netns, before any namespace is bound under
// it. Without this, a namespace we bind onto the plain directory is covered
// the first time `ip netns add` (ours or anyone's) binds the directory onto
// itself: iproute2's recursive bind copies our mount on top, deleteNS then
// unmounts only the copy, and the original, out of reach beneath, makes the
// name unremovable (EBUSY) until reboot. Held under a lock file so two lab
// processes do not both bind the directory.
func ensureMountDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(dir+".hmlab-lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s onto itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether some mount of this mount namespace sits at
// dir (a clean absolute path), from /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	points, err := mountPoints()
	if err != nil {
		return false, err
	}
	return points[dir] > 0, nil
}

// mountPoints counts the mounts at each mount point of this mount namespace.
func mountPoints() (map[string]int, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	points := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		points[unescapeMountinfo(f[4])]++
	}
	return points, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deleteNS unmounts and removes a named namespace. The kernel frees the
// namespace once no process, socket or file holds it. Deleting a missing name
// is not an error.
func deleteNS(name string) error { return deleteNSIn(netnsDir, name) }

func deleteNSIn(dir, name string) error {
	path := filepath.Join(dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", name, err)
	}
	err := os.Remove(path)
	if errors.Is(err, unix.EBUSY) {
		// Still a mount point, of a mount we cannot reach by path: see
		// ensureMountDir for how that happens.
		err = removeCovered(dir, path)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", name, err)
	}
	return nil
}

// removeCovered removes path, a file under dir with a mount on it that a
// later mount over dir hides. unlink refuses a file that is a mount point in
// the caller's mount namespace, but once it succeeds the kernel detaches every
// mount on the file in every namespace. So on a throwaway thread with a
// private copy of the mount namespace, it peels the mounts off dir and path
// in the copy (nothing propagates back), unlinks path, and the originals go
// with it.
func removeCovered(dir, path string) error {
	return onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare mount namespace: %w", err)
		}
		if err := unix.Mount("", "/", "none", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make the mount namespace private: %w", err)
		}
		for _, p := range []string{dir, path} {
			for i := 0; i < 64; i++ {
				if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
					break // EINVAL: no longer a mount point
				}
			}
		}
		if err := unix.Unlink(path); err != nil {
			return &os.PathError{Op: "remove", Path: path, Err: err}
		}
		return nil
	})
}

// nsID identifies a network namespace by the device and inode of its nsfs
// file.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{dev: st.Dev, ino: st.Ino}, nil
}

// killAllIn SIGKILLs every process (other than this one) whose network
// namespace is the named one, repeating a few passes to catch children forked
// meanwhile. It returns how many processes it signalled.
func killAllIn(name string) (int, error) {
	id, err := statNS(nsPath(name))
	if err != nil {
		return 0, fmt.Errorf("stat namespace %s: %w", name, err)
	}
	self := os.Getpid()
	killed := map[int]bool{}
	// Repeat until a pass finds nobody new: children forked before the
	// signal landed show up in a later pass. A killed process may still be
	// seen while it exits; it is not signalled twice.
	for pass := 0; pass < 10; pass++ {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return len(killed), fmt.Errorf("read /proc: %w", err)
		}
		fresh := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self || killed[pid] {
				continue
			}
			pid2, err := statNS("/proc/" + e.Name() + "/ns/net")
			if err != nil || pid2 != id {
				continue // gone, a zombie, or elsewhere
			}
			if err := unix.Kill(pid, unix.SIGKILL); err == nil {
				killed[pid] = true
				fresh++
			}
		}
		if fresh == 0 {
			break
		}
	}
	return len(killed), nil
}

// Command returns a command that runs argv inside the host's network
// namespace (through `ip netns exec`, which execs argv, so the process's pid
// is argv's). The context kills it like exec.CommandContext does. For an
// unknown host or an empty argv the command's Start fails. The caller owns
// the command; KillAll and Crash kill it too.
func (l *Lab) Command(ctx context.Context, host string, argv ...string) *exec.Cmd {
	h, err := l.host(host)
	if err == nil && len(argv) == 0 {
		err = errors.New("empty argv")
	}
	args := []string{"netns", "exec"}
	if h != nil {
		args = append(args, h.NS)
	}
	cmd := exec.CommandContext(ctx, "ip", append(args, argv...)...)
	if err != nil {
		cmd.Err = fmt.Errorf("lab command on %q: %w", host, err)
	}
	return cmd
}

// KillAll SIGKILLs every process whose network namespace is the host's (the
// calling process excepted), and returns how many it signalled. It does not
// reap them: the parent of each (for Command, the caller) still has to Wait.
// A process started by Command enters the namespace a few milliseconds after
// Start returns (when `ip netns exec` has done its setns); wait for
// Contains(host, pid) before relying on KillAll or Crash to find it. Safe for
// concurrent use.
func (l *Lab) KillAll(host string) (int, error) {
	h, err := l.host(host)
	if err != nil {
		return 0, err
	}
	n, err := killAllIn(h.NS)
	if err != nil {
		return n, fmt.Errorf("kill all in %s: %w", host, err)
	}
	return n, nil
}

// Contains reports whether process pid is currently in the host's network
// namespace (false for unknown hosts, gone processes and after Close).
func (l *Lab) Contains(host string, pid int) bool {
	h, err := l.host(host)
	if err != nil {
		return false
	}
	want, err1 := statNS(nsPath(h.NS))
	got, err2 := statNS(fmt.Sprintf("/proc/%d/ns/net", pid))
	return err1 == nil && err2 == nil && want == got
}

// InNamespace runs fn on a fresh OS thread that has entered the host's
// network namespace, and returns fn's error. Sockets, listeners and netlink
// handles fn creates stay bound to that namespace after fn returns and may be
// used from any goroutine; that is how an in-process component is given its
// node's network. The thread is destroyed afterwards, so the caller's thread
// never changes namespace. Goroutines fn starts do NOT run in the namespace.
func (l *Lab) InNamespace(host string, fn func() error) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	return inNS(h.NS, fn)
}

// InLabNamespace runs fn, like Lab.InNamespace, on a fresh OS thread that
// has entered the named namespace, which must be a lab namespace
// ("hmlab-<pid>-<hex>-..."; of this process or another one, as `ip netns
// list` shows them). It is for tools that attach to a lab another process
// built; fn should call GuardHere before it sends anything.
func InLabNamespace(ns string, fn func() error) error {
	if !labNameRE.MatchString(ns) || strings.ContainsRune(ns, '/') {
		return fmt.Errorf("lab: %q is not a lab namespace", ns)
	}
	return inNS(ns, fn)
}

// isAlive reports whether pid names a live process (in our pid namespace).
func isAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
