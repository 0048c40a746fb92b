package checks

import (
	"bytes"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
	"github.com/harbormaster/harbormaster/internal/conf"
)

// startRedis runs a redis-server with requirepass password on a free
// 127.0.0.1 port until the test ends and returns its address. extra are
// more server arguments.
func startRedis(t *testing.T, password string, extra ...string) string {
	t.Helper()
	port := freePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--requirepass", password, "--dir", t.TempDir()}, extra...)
	cmd := exec.Command("redis-server", args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("redis-server on port %d:\n%s", port, log.String())
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, 10*time.Second, "redis-server to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

func TestRedisProbe(t *testing.T) {
	labtest.RequireBin(t, "redis-server")
	const masterPass = "s3cret pass" // with a space, as requirepass allows
	master := startRedis(t, masterPass)
	replica := startRedis(t, "simple", "--replicaof", "127.0.0.1", portOf(t, master), "--masterauth", masterPass)

	dir := t.TempDir()
	right := writeFile(t, dir, "right", "default "+masterPass+"\n") // user and password
	plain := writeFile(t, dir, "plain", "simple\r\n")               // the password alone
	replicaRight := writeFile(t, dir, "replica", "default simple")  // no line end
	wrong := writeFile(t, dir, "wrong", "default nope\n")
	empty := writeFile(t, dir, "empty", "\n")
	loose := writeFileMode(t, dir, "loose", "default simple\n", 0o604)
	tests := []struct {
		name     string
		addr     string
		password string
		role     string
		wantErr  string
		wantOut  string
	}{
		{"PING with the right password", master, right, "", "", "PONG in "},
		{"wrong password", master, wrong, "", "AUTH: WRONGPASS", ""},
		{"password alone", replica, plain, "", "", "PONG in "},
		{"password alone is not split", master, plain, "", "AUTH: WRONGPASS", ""},
		{"no password", master, "", "", "PING: NOAUTH", ""},
		{"missing password file", master, dir + "/missing", "", "password_file: " + dir + "/missing does not exist; create it (mode 0600) or fix the path", ""},
		{"password file others may read", master, loose, "", "password_file: " + loose + " has mode 0604, others may read or change it; a secret file must be mode 0600 or 0400: run chmod 600 " + loose, ""},
		{"empty password file", master, empty, "", "password_file: " + empty + ": the first line is empty", ""},
		{"role master matches", master, right, "master", "", "PONG in |role master"},
		{"role replica on a master", master, right, "replica", "role is master, want replica", "role master"},
		{"role slave on a master", master, right, "slave", "role is master, want slave", ""},
		{"role replica matches a replica", replica, replicaRight, "replica", "", "role slave"},
		{"role slave matches a replica", replica, plain, "slave", "", "role slave"},
		{"role master on a replica", replica, plain, "master", "role is slave, want master", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runProbe(t, Config{Name: "redis", Type: TypeRedis, Address: tc.addr, PasswordFile: tc.password, Role: tc.role, Timeout: conf.Duration(2 * time.Second)})
			checkResult(t, r, tc.wantErr, tc.wantOut)
		})
	}
}

// TestRedisProbeNotRedis points a redis check at a server that does not
// speak RESP.
func TestRedisProbeNotRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	r := runProbe(t, Config{Name: "redis", Type: TypeRedis, Address: l.Addr().String()})
	checkResult(t, r, `PING: unexpected reply "HTTP/1.1 400 Bad Request"; is it a Redis server?`, "")

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts (backlog), never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r = runProbe(t, Config{Name: "redis", Type: TypeRedis, Address: silent.Addr().String(), Timeout: conf.Duration(200 * time.Millisecond)})
	// The error proves the check's timeout ended the probe (runProbe's
	// safety net would have canceled it instead).
	checkResult(t, r, "PING: timed out after 200ms", "")
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
