// Package secretfile reads the files that hold secrets named in a node's
// config (a password file, a registry's credentials): every reader of such a
// file goes through it, so every one refuses a file other users could read or
// write.
//
// A secret file must be a regular file, of mode 0600 or 0400 (no bit for the
// group or others; the owner's execute bit is refused too) and owned by the
// agent's effective user or by root. A file readable by others has leaked
// already; one writable by others, or owned by another user, lets them choose
// the credentials the agent sends or accepts. The rule is ssh's for private
// keys and libpq's for password files.
//
// The file is opened once and checked through the open descriptor (fstat),
// so it cannot be swapped between the check and the read. Read and ReadLine
// check it again at every call, so a file rotated with the wrong mode is
// refused at the next use, not only at start.
package secretfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// MaxSize is the most Read reads of a secret file.
const MaxSize = 64 << 10

// Check opens path and returns nil when it is a secret file the agent may
// use (see the package documentation), else a *conf.FieldError naming field,
// the file, what is wrong (its mode, its owner) and the fix.
func Check(field, path string) error {
	f, err := open(field, path)
	if err != nil {
		return err
	}
	return f.Close()
}

// CheckExisting is Check for a file that may not exist yet: a path where
// nothing exists passes (the file may be provisioned after the agent starts,
// and its reader reports it missing at each use), anything else must pass
// Check.
func CheckExisting(field, path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return Check(field, path)
}

// Read returns the content of the secret file path (at most MaxSize bytes)
// after the checks of Check; errors are *conf.FieldError naming field.
func Read(field, path string) ([]byte, error) {
	f, err := open(field, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize))
	if err != nil {
		return nil, conf.Errorf(field, "read %s: %v", path, err)
	}
	return b, nil
}

// ReadLine returns the first line of the secret file path without its line
// ending ("\n" or "\r\n"), after the checks of Check. An empty first line is
// an error: a password file that says nothing is a mistake, not "no
// password".
func ReadLine(field, path string) (string, error) {
	b, err := Read(field, path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", conf.Errorf(field, "%s: the first line is empty; write the secret on the first line", path)
	}
	return line, nil
}

// open opens path and checks the open file.
func open(field, path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, conf.Errorf(field, "%s does not exist; create it (mode 0600) or fix the path", path)
		}
		return nil, conf.Errorf(field, "cannot open %s: %v", path, unwrapPath(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, conf.Errorf(field, "stat %s: %v", path, unwrapPath(err))
	}
	if err := checkInfo(field, path, fi, os.Geteuid()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkInfo applies the rule to the file's metadata; euid is the agent's
// effective user.
func checkInfo(field, path string, fi fs.FileInfo, euid int) error {
	if !fi.Mode().IsRegular() {
		return conf.Errorf(field, "%s is not a regular file (%s); give the path of the file that holds the secret", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o177 != 0 {
		what := "others may read or change it"
		if perm&0o077 == 0 {
			what = "a secret file is not a program" // 0700, 0500
		}
		return conf.Errorf(field, "%s has mode %04o, %s; a secret file must be mode 0600 or 0400: run chmod 600 %s", path, perm, what, path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return conf.Errorf(field, "%s: cannot tell the file's owner on this system", path)
	}
	if uid := int(st.Uid); uid != euid && uid != 0 {
		return conf.Errorf(field, "%s is owned by uid %d, but the agent runs as uid %d; a secret file must belong to the agent's user or root: run chown %d %s (or chown root), then chmod 600 %s",
			path, uid, euid, euid, path, path)
	}
	return nil
}

// unwrapPath drops the *fs.PathError wrapper: the message names the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
