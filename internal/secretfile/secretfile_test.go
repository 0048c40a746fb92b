package secretfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// write makes a file of content and mode in a fresh directory.
func write(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is masked by the umask
		t.Fatal(err)
	}
	return p
}

// wantFieldErr asserts err is a *conf.FieldError for field whose message
// holds every part.
func wantFieldErr(t *testing.T, err error, field string, parts ...string) {
	t.Helper()
	var fe *conf.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v (%T), want a *conf.FieldError", err, err)
	}
	if fe.Field != field {
		t.Errorf("field: got %q, want %q", fe.Field, field)
	}
	for _, p := range parts {
		if !strings.Contains(fe.Msg, p) {
			t.Errorf("message %q does not contain %q", fe.Msg, p)
		}
	}
}

func TestModes(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := write(t, "s3cret\n", mode)
		if err := Check("redis.password_file", p); err != nil {
			t.Errorf("mode %04o: got %v, want it accepted", mode, err)
		}
		if line, err := ReadLine("redis.password_file", p); err != nil || line != "s3cret" {
			t.Errorf("mode %04o: ReadLine got %q, %v; want s3cret", mode, line, err)
		}
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o666, 0o620, 0o602, 0o700, 0o500} {
		p := write(t, "s3cret\n", mode)
		for name, f := range map[string]func() error{
			"Check":    func() error { return Check("sentinel.password_file", p) },
			"Read":     func() error { _, err := Read("sentinel.password_file", p); return err },
			"ReadLine": func() error { _, err := ReadLine("sentinel.password_file", p); return err },
		} {
			err := f()
			if err == nil {
				t.Errorf("mode %04o: %s accepted the file, want it refused", mode, name)
				continue
			}
			wantFieldErr(t, err, "sentinel.password_file", p, fmt.Sprintf("has mode %04o", mode), "chmod 600 "+p)
		}
	}
}

func TestModeMessage(t *testing.T) {
	p := write(t, "x\n", 0o644)
	err := Check("checks[0].credentials_file", p)
	want := "checks[0].credentials_file: " + p + " has mode 0644, others may read or change it; a secret file must be mode 0600 or 0400: run chmod 600 " + p
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestNotAFile(t *testing.T) {
	dir := t.TempDir()
	wantFieldErr(t, Check("f", filepath.Join(dir, "missing")), "f", "does not exist", "mode 0600")
	wantFieldErr(t, Check("f", dir), "f", "is not a regular file")
	_, err := ReadLine("f", write(t, "\nsecond line\n", 0o600))
	wantFieldErr(t, err, "f", "first line", "is empty")
}

func TestCheckExisting(t *testing.T) {
	if err := CheckExisting("f", filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("missing file: got %v, want nil (it may be provisioned later)", err)
	}
	if err := CheckExisting("f", write(t, "pw\n", 0o600)); err != nil {
		t.Errorf("mode 0600: got %v, want nil", err)
	}
	p := write(t, "pw\n", 0o644)
	wantFieldErr(t, CheckExisting("f", p), "f", "has mode 0644", "chmod 600 "+p)
}

func TestReadLine(t *testing.T) {
	for content, want := range map[string]string{
		"pw":                "pw",
		"pw\n":              "pw",
		"pw\r\nignored\n":   "pw",
		"user pass word\n":  "user pass word",
		"a:b:c\nsecond\n\n": "a:b:c",
	} {
		got, err := ReadLine("f", write(t, content, 0o600))
		if err != nil || got != want {
			t.Errorf("ReadLine(%q): got %q, %v; want %q", content, got, err, want)
		}
	}
}

// TestSymlink: a link is followed; the rule applies to the file it names.
func TestSymlink(t *testing.T) {
	for mode, ok := range map[os.FileMode]bool{0o600: true, 0o644: false} {
		target := write(t, "pw\n", mode)
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := Check("f", link); (err == nil) != ok {
			t.Errorf("link to a %04o file: got %v, want accepted=%v", mode, err, ok)
		}
	}
}

// TestOwner: a file of another user is refused, one of root or the agent's
// user accepted. As root the test gives the file to nobody; otherwise it
// checks the file's metadata against another effective uid, which is the
// same rule without the chown.
func TestOwner(t *testing.T) {
	const nobody = 65534
	p := write(t, "pw\n", 0o600)
	euid := os.Geteuid()
	if euid == 0 {
		if err := Check("f", p); err != nil {
			t.Errorf("root's file, agent root: got %v, want accepted", err)
		}
		if err := os.Chown(p, nobody, -1); err != nil {
			t.Fatal(err)
		}
		wantFieldErr(t, Check("f", p), "f", p, "owned by uid 65534", "runs as uid 0", "chown 0 "+p, "chmod 600 "+p)
		return
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkInfo("f", p, fi, euid); err != nil {
		t.Errorf("own file: got %v, want accepted", err)
	}
	wantFieldErr(t, checkInfo("f", p, fi, euid+1), "f", "owned by uid", "chown")
	if fi, err = os.Stat("/etc/passwd"); err == nil { // root's, mode 0644: the owner is fine, the mode is not
		wantFieldErr(t, checkInfo("f", "/etc/passwd", fi, euid), "f", "has mode 0644")
	}
}
