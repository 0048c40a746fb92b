package resp

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "*1\r\n$4\r\nPING\r\n"},
		{[]string{"AUTH", "default", "s3cret pass"}, "*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$11\r\ns3cret pass\r\n"},
		{[]string{"SET", "k", "", "a\r\nb"}, "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"},
		{nil, "*0\r\n"},
	}
	for _, tc := range tests {
		got := string(AppendCommand([]byte("prefix"), tc.args...))
		if got != "prefix"+tc.want {
			t.Errorf("AppendCommand(%q) = %q, want %q", tc.args, got, "prefix"+tc.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	small := Limits{MaxBulk: 8, MaxArray: 3, MaxDepth: 2}
	tests := []struct {
		name string
		in   string
		lim  Limits
		want []any  // the replies read before the error
		err  string // "" for io.EOF after the replies; else the error's text
	}{
		{"simple string", "+OK\r\n", Limits{}, []any{"OK"}, ""},
		{"error reply", "-READONLY You can't write against a read only replica.\r\n", Limits{},
			[]any{&Error{Msg: "READONLY You can't write against a read only replica."}}, ""},
		{"integer", ":-42\r\n:0\r\n", Limits{}, []any{int64(-42), int64(0)}, ""},
		{"bulk string with a line break", "$5\r\na\r\nbc\r\n", Limits{}, []any{"a\r\nbc"}, ""},
		{"empty bulk string", "$0\r\n\r\n", Limits{}, []any{""}, ""},
		{"bulk string of several read chunks", "$200000\r\n" + strings.Repeat("ab", 100000) + "\r\n", Limits{},
			[]any{strings.Repeat("ab", 100000)}, ""},
		{"bulk string of exactly one read chunk", "$65534\r\n" + strings.Repeat("c", 65534) + "\r\n", Limits{},
			[]any{strings.Repeat("c", 65534)}, ""},
		{"null bulk string", "$-1\r\n", Limits{}, []any{nil}, ""},
		{"null array", "*-1\r\n", Limits{}, []any{nil}, ""},
		{"empty array", "*0\r\n", Limits{}, []any{[]any{}}, ""},
		{"array of every type", "*5\r\n$21\r\nmin-replicas-to-write\r\n:7\r\n*-1\r\n+OK\r\n-ERR no\r\n", Limits{},
			[]any{[]any{"min-replicas-to-write", int64(7), nil, "OK", &Error{Msg: "ERR no"}}}, ""},
		{"nested arrays", "*2\r\n*2\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n*0\r\n", Limits{},
			[]any{[]any{[]any{"ip", "10.0.0.1"}, []any{}}}, ""},
		{"pipelined replies", "+OK\r\n:1\r\n$1\r\nx\r\n", Limits{}, []any{"OK", int64(1), "x"}, ""},
		{"line ended by LF alone", "+OK\n", Limits{}, []any{"OK"}, ""},
		{"within small limits", "*3\r\n$8\r\n12345678\r\n*1\r\n:1\r\n$-1\r\n", small,
			[]any{[]any{"12345678", []any{int64(1)}, nil}}, ""},

		{"integer not a number", ":x\r\n", Limits{}, nil, `bad integer reply ":x"`},
		{"integer with a plus", ":+1\r\n", Limits{}, nil, `bad integer reply ":+1"`},
		{"bulk length not a number", "$abc\r\n", Limits{}, nil, `bad bulk length in "$abc"`},
		{"bulk length below -1", "$-2\r\n", Limits{}, nil, `bad bulk length in "$-2"`},
		{"bulk without its CRLF", "$2\r\nabcd\r\n", Limits{}, nil, "bulk reply not terminated by CRLF"},
		{"array length not a number", "*x\r\n", Limits{}, nil, `bad array reply "*x"`},
		{"array length below -1", "*-2\r\n", Limits{}, nil, `bad array reply "*-2"`},
		{"empty line", "\r\n", Limits{}, nil, "empty reply line; is it a Redis server?"},
		{"RESP3 type", "%1\r\n", Limits{}, nil, `unexpected reply "%1"; is it a Redis server?`},
		{"HTTP", "HTTP/1.1 400 Bad Request\r\n\r\n", Limits{}, nil, `unexpected reply "HTTP/1.1 400 Bad Request"; is it a Redis server?`},
		{"long garbage is clipped", strings.Repeat("x", 40) + "\r\n", Limits{}, nil,
			`unexpected reply "` + strings.Repeat("x", 32) + `..."; is it a Redis server?`},
		{"malformed element of an array", "*2\r\n+OK\r\n:x\r\n", Limits{}, nil, `bad integer reply ":x"`},

		{"bulk above the default", "$4194305\r\n", Limits{}, nil, `bad bulk length in "$4194305"`},
		{"bulk length beyond int64", "$99999999999999999999\r\n", Limits{}, nil, `bad bulk length in "$99999999999999999999"`},
		{"bulk above MaxBulk", "$9\r\n123456789\r\n", small, nil, `bad bulk length in "$9"`},
		{"array above the default", "*1025\r\n", Limits{}, nil, `bad array reply "*1025"`},
		{"array above MaxArray", "*4\r\n", small, nil, `bad array reply "*4"`},
		{"arrays deeper than MaxDepth", "*1\r\n*1\r\n*0\r\n", small, nil, `bad array reply "*0"`},
		{"arrays deeper than the default", strings.Repeat("*1\r\n", 5), Limits{}, nil, `bad array reply "*1"`},
		{"line too long", "+" + strings.Repeat("x", maxReplyLine+1) + "\r\n", Limits{}, nil, "reply line too long; is it a Redis server?"},

		{"truncated line", "+OK", Limits{}, nil, io.ErrUnexpectedEOF.Error()},
		{"truncated bulk", "$10\r\nabc", Limits{}, nil, io.ErrUnexpectedEOF.Error()},
		{"bulk truncated after its first read chunk", "$200000\r\n" + strings.Repeat("x", 70000), Limits{}, nil, io.ErrUnexpectedEOF.Error()},
		{"bulk without its line end", "$3\r\nabc", Limits{}, nil, io.ErrUnexpectedEOF.Error()},
		{"truncated array", "*3\r\n:1\r\n", Limits{}, nil, io.ErrUnexpectedEOF.Error()},
		{"truncated nested array", "*2\r\n*2\r\n:1\r\n", Limits{}, nil, io.ErrUnexpectedEOF.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			var got []any
			var err error
			for {
				var v any
				if v, err = ReadReply(br, tc.lim); err != nil {
					break
				}
				got = append(got, v)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("replies:\n got %#v\nwant %#v", got, tc.want)
			}
			checkReadErr(t, err, tc.err)
		})
	}
}

func TestErrorPrefix(t *testing.T) {
	for msg, want := range map[string]string{
		"NOREPLICAS Not enough good replicas to write.": "NOREPLICAS",
		"ERR":         "ERR",
		"":            "",
		"WRONGPASS x": "WRONGPASS",
	} {
		if got := (&Error{Msg: msg}).Prefix(); got != want {
			t.Errorf("Prefix of %q = %q, want %q", msg, got, want)
		}
	}
}

// TestAnnouncedLengthsDoNotAllocate: a reply or request that announces a
// large array or bulk string, within the limits, and sends little of it
// costs what arrived, not what was announced.
func TestAnnouncedLengthsDoNotAllocate(t *testing.T) {
	bigLimits := CommandLimits{MaxArgs: 1 << 20, MaxBulk: 1 << 24, MaxInline: 1 << 10, MaxRequest: 1 << 24}
	tests := []struct {
		name string
		in   string
		read func(*bufio.Reader) error
	}{
		{"reply array", "*1000000000\r\n:1\r\n", func(br *bufio.Reader) error {
			_, err := ReadReply(br, Limits{MaxArray: 1 << 30})
			return err
		}},
		{"reply bulk", "$16777216\r\nab", func(br *bufio.Reader) error {
			_, err := ReadReply(br, Limits{MaxBulk: 1 << 24})
			return err
		}},
		{"request arguments", "*1048576\r\n$1\r\na\r\n", func(br *bufio.Reader) error {
			_, err := ReadCommand(br, bigLimits)
			return err
		}},
		{"request bulk", "*1\r\n$16777216\r\nab", func(br *bufio.Reader) error {
			_, err := ReadCommand(br, bigLimits)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 10 {
				if err := tc.read(bufio.NewReader(strings.NewReader(tc.in))); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("read %q: %v, want io.ErrUnexpectedEOF", tc.in, err)
				}
			}
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("10 reads of %q allocated %d bytes, want under 1 MiB", tc.in, n)
			}
		})
	}
}

// checkReadErr checks what ended a read loop: io.EOF when want is empty,
// else an error with text want that is a *ProtocolError exactly when it is
// not a cut-off (io.ErrUnexpectedEOF).
func checkReadErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != io.EOF {
			t.Errorf("error: got %v, want io.EOF", err)
		}
		return
	}
	if err == nil || err.Error() != want {
		t.Errorf("error: got %v, want %q", err, want)
	}
	var pe *ProtocolError
	if isEOF := errors.Is(err, io.ErrUnexpectedEOF); errors.As(err, &pe) == isEOF {
		t.Errorf("error %v: *ProtocolError is %v, want %v", err, !isEOF, isEOF)
	}
}
