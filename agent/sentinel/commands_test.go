package sentinel

import (
	"strings"
	"testing"
	"time"
)

// fixture is two masters: mymaster, up at 127.0.0.1:16379 with one replica
// and two other sentinels (the Source also lists this one, which the server
// leaves out), and "other", with no master elected.
func fixture() *fakeSource {
	return &fakeSource{
		masters: []Master{
			{Name: "mymaster", Addr: Addr{"127.0.0.1", 16379}, Epoch: 7, Replicas: []Addr{{"127.0.0.1", 16380}}},
			{Name: "other", Down: true, Replicas: []Addr{{"::1", 6380}, {"127.0.0.2", 6380}}},
		},
		sentinels: map[string][]Addr{
			"mymaster": {{"127.0.0.2", 26379}, {"127.0.0.9", 26379}, {"::1", 26379}},
		},
	}
}

var fixtureAnnounce = Addr{"127.0.0.9", 26379}

// masterWant is SENTINEL master's reply for the fixture's mymaster 1500 ms
// after the server started, in Sentinel's field order.
var masterWant = bulks(
	"name", "mymaster", "ip", "127.0.0.1", "port", "16379", "runid", "", "flags", "master",
	"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0", "last-ok-ping-reply", "0",
	"last-ping-reply", "0", "down-after-milliseconds", "30000", "info-refresh", "0", "role-reported", "master",
	"role-reported-time", "1500", "config-epoch", "7", "num-slaves", "1", "num-other-sentinels", "2",
	"quorum", "2", "failover-timeout", "180000", "parallel-syncs", "1")

// otherWant is SENTINEL master's reply for the fixture's other master,
// down since the server started 1500 ms ago.
var otherWant = bulks(
	"name", "other", "ip", "", "port", "0", "runid", "", "flags", "s_down,o_down,master",
	"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0", "last-ok-ping-reply", "1500",
	"last-ping-reply", "0", "s-down-time", "1500", "o-down-time", "1500",
	"down-after-milliseconds", "30000", "info-refresh", "0", "role-reported", "master",
	"role-reported-time", "1500", "config-epoch", "0", "num-slaves", "2", "num-other-sentinels", "0",
	"quorum", "1", "failover-timeout", "180000", "parallel-syncs", "1")

func replicaWant(name, host, port, linkStatus, masterHost, masterPort, downTime string) []string {
	return []string{
		"name", name, "ip", host, "port", port, "runid", "", "flags", "slave",
		"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0", "last-ok-ping-reply", "0",
		"last-ping-reply", "0", "down-after-milliseconds", "30000", "info-refresh", "0", "role-reported", "slave",
		"role-reported-time", "1500", "master-link-down-time", downTime, "master-link-status", linkStatus,
		"master-host", masterHost, "master-port", masterPort, "slave-priority", "100", "slave-repl-offset", "0",
		"replica-announced", "1",
	}
}

func sentinelWant(host, port, runID string) []string {
	return []string{
		"name", runID, "ip", host, "port", port, "runid", runID, "flags", "sentinel",
		"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0", "last-ok-ping-reply", "0",
		"last-ping-reply", "0", "down-after-milliseconds", "30000", "last-hello-message", "0",
		"voted-leader", "?", "voted-leader-epoch", "0",
	}
}

// TestCommands checks each command's exact reply in RESP2, in order on one
// connection.
func TestCommands(t *testing.T) {
	clk := newFakeClock()
	_, addr := startServer(t, Config{Announce: fixtureAnnounce}, fixture(), clk)
	clk.advance(1500 * time.Millisecond)
	c := dial(t, addr)

	replica := bulks(replicaWant("127.0.0.1:16380", "127.0.0.1", "16380", "ok", "127.0.0.1", "16379", "0")...)
	peer2 := sentinelWant("127.0.0.2", "26379", "f4deb5f199447025f7b9336e3373c56b3b921309")
	peer6 := sentinelWant("::1", "26379", "ab7efc0a4c96a87593741847f066404f43496082")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"ping", "hello"}, "$5\r\nhello\r\n"},
		{[]string{"PING", "a", "b"}, "-ERR wrong number of arguments for 'ping' command\r\n"},

		{[]string{"SENTINEL", "get-master-addr-by-name", "mymaster"}, "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n"},
		{[]string{"sentinel", "GET-MASTER-ADDR-BY-NAME", "mymaster"}, "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "nope"}, "*-1\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "MYMASTER"}, "*-1\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "other"}, "*-1\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name"}, "-ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "a", "b"}, "-ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command\r\n"},

		{[]string{"SENTINEL", "master", "mymaster"}, masterWant},
		{[]string{"SENTINEL", "master", "other"}, otherWant},
		{[]string{"SENTINEL", "master", "nope"}, "-ERR No such master with that name\r\n"},
		{[]string{"SENTINEL", "masters"}, "*2\r\n" + masterWant + otherWant},
		{[]string{"SENTINEL", "replicas", "mymaster"}, "*1\r\n" + replica},
		{[]string{"SENTINEL", "slaves", "mymaster"}, "*1\r\n" + replica},
		{[]string{"SENTINEL", "replicas", "other"}, "*2\r\n" +
			bulks(replicaWant("[::1]:6380", "::1", "6380", "err", "?", "0", "1500")...) +
			bulks(replicaWant("127.0.0.2:6380", "127.0.0.2", "6380", "err", "?", "0", "1500")...)},
		{[]string{"SENTINEL", "replicas", "nope"}, "-ERR No such master with that name\r\n"},
		{[]string{"SENTINEL", "sentinels", "mymaster"}, "*2\r\n" + bulks(peer2...) + bulks(peer6...)},
		{[]string{"SENTINEL", "sentinels", "other"}, "*0\r\n"},
		{[]string{"SENTINEL", "sentinels", "nope"}, "-ERR No such master with that name\r\n"},
		{[]string{"SENTINEL", "myid"}, "$40\r\n" + testRunID + "\r\n"},
		{[]string{"SENTINEL", "ckquorum", "mymaster"}, "+OK 3 usable Sentinels. Quorum and failover authorization can be reached\r\n"},
		{[]string{"SENTINEL", "ckquorum", "other"}, "+OK 1 usable Sentinels. Quorum and failover authorization can be reached\r\n"},
		{[]string{"SENTINEL", "ckquorum", "nope"}, "-ERR No such master with that name\r\n"},
		{[]string{"ROLE"}, "*2\r\n$8\r\nsentinel\r\n*2\r\n$8\r\nmymaster\r\n$5\r\nother\r\n"},

		{[]string{"SENTINEL"}, "-ERR wrong number of arguments for 'sentinel' command\r\n"},
		{[]string{"SENTINEL", "bogus"}, "-ERR unknown subcommand 'bogus'. Try SENTINEL HELP.\r\n"},
		{[]string{"sentinel", "info-cache"}, "-ERR unknown subcommand 'info-cache'. Try SENTINEL HELP.\r\n"},
		{[]string{"FOO", "bar"}, "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"},
		{[]string{"SET", "a", "b"}, "-ERR unknown command 'SET', with args beginning with: 'a' 'b' \r\n"},
		{[]string{"GET"}, "-ERR unknown command 'GET', with args beginning with: \r\n"},
		{[]string{"X", strings.Repeat("a", 100), strings.Repeat("b", 100), "c"},
			"-ERR unknown command 'X', with args beginning with: '" + strings.Repeat("a", 100) + "' '" + strings.Repeat("b", 25) + "' \r\n"},
		{[]string{"X", "a\r\nb"}, "-ERR unknown command 'X', with args beginning with: 'a  b' \r\n"},

		{[]string{"SENTINEL", "failover", "mymaster"}, "-ERR harbormaster owns this sentinel and its configuration: SENTINEL FAILOVER is refused; use harbormaster move to move the master role\r\n"},
		{[]string{"SENTINEL", "set", "mymaster", "quorum", "1"}, "-ERR harbormaster owns this sentinel and its configuration: SENTINEL SET is refused; change the harbormaster configuration instead\r\n"},
		{[]string{"SENTINEL", "monitor", "x", "127.0.0.1", "6379", "2"}, "-ERR harbormaster owns this sentinel and its configuration: SENTINEL MONITOR is refused; change the harbormaster configuration instead\r\n"},
		{[]string{"SENTINEL", "remove", "mymaster"}, "-ERR harbormaster owns this sentinel and its configuration: SENTINEL REMOVE is refused; change the harbormaster configuration instead\r\n"},
		{[]string{"SENTINEL", "reset", "*"}, "-ERR harbormaster owns this sentinel and its configuration: SENTINEL RESET is refused; change the harbormaster configuration instead\r\n"},
		{[]string{"PUBLISH", "+switch-master", "x"}, "-ERR harbormaster owns this sentinel and its configuration: PUBLISH is refused; only harbormaster publishes here\r\n"},
		{[]string{"SHUTDOWN"}, "-ERR harbormaster owns this sentinel and its configuration: SHUTDOWN is refused; stop the harbormaster agent instead\r\n"},

		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"CLIENT", "SETNAME", "harbor-core"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$11\r\nharbor-core\r\n"},
		{[]string{"CLIENT", "SETNAME", "a b"}, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$11\r\nharbor-core\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis(,go1.26)"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "lib-ver", "9.23.0"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "color", "red"}, "-ERR Unrecognized option 'color'\r\n"},
		{[]string{"CLIENT", "ID"}, ":1\r\n"},
		{[]string{"CLIENT"}, "-ERR wrong number of arguments for 'client' command\r\n"},
		{[]string{"CLIENT", "KILL", "x"}, "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n"},
		{[]string{"COMMAND"}, "*0\r\n"},
		{[]string{"COMMAND", "DOCS"}, "*0\r\n"},
		{[]string{"COMMAND", "COUNT"}, ":0\r\n"},

		{[]string{"INFO", "bogus"}, "$0\r\n\r\n"},
		{[]string{"INFO", "clients"}, "$32\r\n# Clients\r\nconnected_clients:1\r\n\r\n"},
		{[]string{"HELLO", "4"}, "-NOPROTO unsupported protocol version\r\n"},
		{[]string{"HELLO", "x"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"HELLO", "3", "bogus"}, "-ERR Syntax error in HELLO option 'bogus'\r\n"},
		{[]string{"HELLO", "3", "AUTH", "default"}, "-ERR Syntax error in HELLO option 'AUTH'\r\n"},
		{[]string{"HELLO", "3", "AUTH", "bob", "x"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"HELLO", "2"}, "*12\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n"},
		{[]string{"AUTH", "x"}, "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"},
		{[]string{"AUTH", "bob", "x"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "default", "anything"}, "+OK\r\n"},
		{[]string{"AUTH", "a", "b", "c"}, "-ERR syntax error\r\n"},
	}
	for _, tc := range tests {
		if got := c.do(tc.args...); got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
}

// TestRESP3 checks HELLO 3 against Redis 7.0 Sentinel's reply and the
// RESP3 forms of the replies that differ from RESP2.
func TestRESP3(t *testing.T) {
	clk := newFakeClock()
	_, addr := startServer(t, Config{Announce: fixtureAnnounce}, fixture(), clk)
	clk.advance(1500 * time.Millisecond)
	c := dial(t, addr)

	masterMap := "%20\r\n" + strings.TrimPrefix(masterWant, "*40\r\n")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"HELLO", "3", "SETNAME", "x"}, "%6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$1\r\nx\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "mymaster"}, "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "nope"}, "_\r\n"},
		{[]string{"SENTINEL", "master", "mymaster"}, masterMap},
		{[]string{"SENTINEL", "masters"}, "*2\r\n" + masterMap + "%22\r\n" + strings.TrimPrefix(otherWant, "*44\r\n")},
		{[]string{"SENTINEL", "replicas", "mymaster"}, "*1\r\n" + resp3Map(replicaWant("127.0.0.1:16380", "127.0.0.1", "16380", "ok", "127.0.0.1", "16379", "0")...)},
		{[]string{"COMMAND", "DOCS"}, "%0\r\n"},
		{[]string{"HELLO"}, "%6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n"},
		{[]string{"HELLO", "2"}, "*12\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "nope"}, "*-1\r\n"},
	}
	for _, tc := range tests {
		if got := c.do(tc.args...); got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
}

// TestInfo compares INFO sentinel with the bytes of Redis 7.0.15 Sentinel
// for the same state: one master with one replica, no other sentinel.
func TestInfo(t *testing.T) {
	src := &fakeSource{masters: []Master{{Name: "mymaster", Addr: Addr{"127.0.0.1", 16379}, Replicas: []Addr{{"127.0.0.1", 16380}}}}}
	_, addr := startServer(t, Config{Announce: Addr{"127.0.0.1", 26399}}, src, nil)
	c := dial(t, addr)

	real := "$255\r\n# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\nmaster0:name=mymaster,status=ok,address=127.0.0.1:16379,slaves=1,sentinels=1\r\n\r\n"
	if got := c.do("INFO", "sentinel"); got != real {
		t.Errorf("INFO sentinel:\n got %q\nwant %q", got, real)
	}
	if got := c.do("INFO", "SENTINEL", "nonsense"); got != real {
		t.Errorf("INFO SENTINEL nonsense:\n got %q\nwant %q", got, real)
	}
	all := c.do("INFO")
	for _, want := range []string{
		"# Server\r\nredis_version:7.0.0\r\nredis_mode:sentinel\r\nprocess_id:",
		"\r\nrun_id:" + testRunID + "\r\ntcp_port:26399\r\nuptime_in_seconds:",
		"\r\n\r\n# Clients\r\nconnected_clients:1\r\n\r\n# Sentinel\r\nsentinel_masters:1\r\n",
		"master0:name=mymaster,status=ok,address=127.0.0.1:16379,slaves=1,sentinels=1\r\n\r\n",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("INFO lacks %q:\n%s", want, all)
		}
	}
	if got := c.do("INFO", "everything"); got != all {
		t.Errorf("INFO everything:\n got %q\nwant %q (INFO)", got, all)
	}

	src.update("mymaster", func(m *Master) { m.Down = true })
	if got := c.do("INFO", "sentinel"); !strings.Contains(got, "master0:name=mymaster,status=odown,address=127.0.0.1:16379,slaves=1,sentinels=1\r\n") {
		t.Errorf("INFO sentinel of a down master: got %q, want status=odown", got)
	}
}

// TestRequests checks inline requests, pipelining and QUIT.
func TestRequests(t *testing.T) {
	_, addr := startServer(t, Config{}, fixture(), nil)
	c := dial(t, addr)

	c.sendRaw("ping\r\nsentinel get-master-addr-by-name mymaster\n")
	for _, want := range []string{"+PONG\r\n", "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n"} {
		if got := c.reply(); got != want {
			t.Errorf("inline: got %q, want %q", got, want)
		}
	}
	c.sendRaw(encodeCommand("PING", "1") + "\r\n" + encodeCommand("SENTINEL", "myid") + `PING "a b"` + "\r\n")
	for _, want := range []string{"$1\r\n1\r\n", "$40\r\n" + testRunID + "\r\n", "$3\r\na b\r\n"} {
		if got := c.reply(); got != want {
			t.Errorf("pipelined: got %q, want %q", got, want)
		}
	}
	if got := c.do("QUIT"); got != "+OK\r\n" {
		t.Errorf("QUIT: got %q, want +OK", got)
	}
	c.expectClosed()
}

// TestProtocolErrors checks that a malformed request gets Redis's error and
// the connection is closed.
func TestProtocolErrors(t *testing.T) {
	_, addr := startServer(t, Config{}, fixture(), nil)
	tests := []struct{ in, want string }{
		{"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"},
		{"*1\r\n$70000\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"PING \"a\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"PING\r\n*2000\r\n", "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"},
	}
	for _, tc := range tests {
		c := dial(t, addr)
		c.sendRaw(tc.in)
		got := c.reply()
		if strings.HasPrefix(tc.want, "+PONG") {
			got += c.reply()
		}
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
		c.expectClosed()
	}
}

// TestAuth checks the authentication flow with a password file, in the
// password-only and the ACL ("user password") forms.
func TestAuth(t *testing.T) {
	helloNoAuth := "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"
	const noAuth = "-NOAUTH Authentication required.\r\n"
	const wrongPass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
	t.Run("password", func(t *testing.T) {
		_, addr := startServer(t, Config{PasswordFile: writeFile(t, "pw", "sekret\n")}, fixture(), nil)
		c := dial(t, addr)
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"PING"}, noAuth},
			{[]string{"SENTINEL", "get-master-addr-by-name", "mymaster"}, noAuth},
			{[]string{"SUBSCRIBE", "+switch-master"}, noAuth},
			{[]string{"CLIENT", "SETNAME", "x"}, noAuth},
			{[]string{"FOO"}, "-ERR unknown command 'FOO', with args beginning with: \r\n"},
			{[]string{"HELLO", "3"}, helloNoAuth},
			{[]string{"HELLO"}, helloNoAuth},
			{[]string{"AUTH", "bad"}, wrongPass},
			{[]string{"AUTH", "default", "bad"}, wrongPass},
			{[]string{"AUTH", "sekret", "x", "y"}, "-ERR syntax error\r\n"},
			{[]string{"AUTH"}, "-ERR wrong number of arguments for 'auth' command\r\n"},
			{[]string{"HELLO", "3", "AUTH", "default", "bad"}, wrongPass},
			{[]string{"PING"}, noAuth},
			{[]string{"AUTH", "sekret"}, "+OK\r\n"},
			{[]string{"PING"}, "+PONG\r\n"},
			{[]string{"SENTINEL", "get-master-addr-by-name", "mymaster"}, "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n"},
			{[]string{"AUTH", "bad"}, wrongPass},
			{[]string{"PING"}, "+PONG\r\n"}, // a failed AUTH keeps the earlier one
			{[]string{"RESET"}, "+RESET\r\n"},
			{[]string{"PING"}, noAuth},
			{[]string{"AUTH", "default", "sekret"}, "+OK\r\n"},
			{[]string{"PING"}, "+PONG\r\n"},
		}
		for _, tc := range tests {
			if got := c.do(tc.args...); got != tc.want {
				t.Errorf("%q:\n got %q\nwant %q", tc.args, got, tc.want)
			}
		}

		c = dial(t, addr)
		if got := c.do("HELLO", "3", "AUTH", "default", "sekret"); !strings.HasPrefix(got, "%6\r\n$6\r\nserver\r\n") {
			t.Errorf("HELLO 3 AUTH: got %q, want the HELLO map", got)
		}
		if got := c.do("PING"); got != "+PONG\r\n" {
			t.Errorf("PING after HELLO AUTH: got %q", got)
		}

		// Before authentication, requests have Redis's smaller limits.
		c = dial(t, addr)
		c.sendRaw("*11\r\n")
		if got, want := c.reply(), "-ERR Protocol error: unauthenticated multibulk length\r\n"; got != want {
			t.Errorf("11 arguments before AUTH: got %q, want %q", got, want)
		}
		c.expectClosed()
		c = dial(t, addr)
		c.sendRaw("*2\r\n$4\r\nAUTH\r\n$16385\r\n")
		if got, want := c.reply(), "-ERR Protocol error: unauthenticated bulk length\r\n"; got != want {
			t.Errorf("a 16385-byte argument before AUTH: got %q, want %q", got, want)
		}
		c.expectClosed()
	})

	t.Run("user and password", func(t *testing.T) {
		pw := writeFile(t, "pw", "harbor s3cret pass\r\n")
		_, addr := startServer(t, Config{PasswordFile: pw}, fixture(), nil)
		c := dial(t, addr)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"AUTH", "s3cret pass"}, wrongPass},
			{[]string{"AUTH", "default", "s3cret pass"}, wrongPass},
			{[]string{"AUTH", "harbor", "s3cret"}, wrongPass},
			{[]string{"AUTH", "harbor", "s3cret pass"}, "+OK\r\n"},
			{[]string{"PING"}, "+PONG\r\n"},
		} {
			if got := c.do(tc.args...); got != tc.want {
				t.Errorf("%q:\n got %q\nwant %q", tc.args, got, tc.want)
			}
		}

		// The file is read at every AUTH: a rotated password takes effect.
		if err := writeFileAt(pw, "harbor n3w\n"); err != nil {
			t.Fatal(err)
		}
		c = dial(t, addr)
		if got := c.do("AUTH", "harbor", "s3cret pass"); got != wrongPass {
			t.Errorf("old password after rotation: got %q, want WRONGPASS", got)
		}
		if got := c.do("AUTH", "harbor", "n3w"); got != "+OK\r\n" {
			t.Errorf("new password after rotation: got %q, want +OK", got)
		}
	})
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		src  Source
		want string
	}{
		{"nil source", Config{RunID: testRunID}, nil, "sentinel: nil Source"},
		{"no run id", Config{}, fixture(), `sentinel: run id "" is not 40 lower-case hex characters`},
		{"short run id", Config{RunID: "abc"}, fixture(), `sentinel: run id "abc" is not 40 lower-case hex characters`},
		{"upper-case run id", Config{RunID: strings.ToUpper(testRunID)}, fixture(), "is not 40 lower-case hex characters"},
		{"missing password file", Config{RunID: testRunID, PasswordFile: dir + "/missing"}, fixture(),
			"sentinel: password_file: " + dir + "/missing does not exist; create it (mode 0600) or fix the path"},
		{"password file others may read", Config{RunID: testRunID, PasswordFile: writeFileMode(t, "loose", "pw\n", 0o644)}, fixture(),
			"has mode 0644, others may read or change it; a secret file must be mode 0600 or 0400: run chmod 600 "},
		{"empty password file", Config{RunID: testRunID, PasswordFile: writeFile(t, "empty", "\nsecond line\n")}, fixture(),
			"the first line is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.src, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(Config{RunID: testRunID}, fixture(), nil); err != nil {
		t.Errorf("New with a valid config: %v", err)
	}
}

// TestClose checks that Close ends idle connections and every Serve, and
// that Serve after Close returns at once.
func TestClose(t *testing.T) {
	s, err := New(Config{RunID: testRunID}, fixture(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	var addrs []string
	for range 2 {
		ln, err := newListener()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		go func() { served <- s.Serve(ln) }()
	}
	var clients []*client
	for _, a := range addrs {
		c := dial(t, a)
		if got := c.do("SUBSCRIBE", "+switch-master"); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe") {
			t.Fatalf("SUBSCRIBE: got %q", got)
		}
		clients = append(clients, c)
	}
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
	for range 2 {
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve: got %v, want ErrServerClosed", err)
		}
	}
	for _, c := range clients {
		c.expectClosed()
	}
	ln, err := newListener()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); err != ErrServerClosed {
		t.Errorf("Serve after Close: got %v, want ErrServerClosed", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("Serve after Close left its listener open")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
