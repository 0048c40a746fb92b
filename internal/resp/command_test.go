package resp

import (
	"bufio"
	"io"
	"slices"
	"strings"
	"testing"
)

// The Sentinel server's limits: Redis's own, and its smaller ones before
// authentication.
var (
	fullLimits   = CommandLimits{MaxArgs: 1024, MaxBulk: 64 << 10, MaxInline: 64 << 10, MaxRequest: 1 << 20}
	noAuthLimits = CommandLimits{MaxArgs: 1024, MaxBulk: 64 << 10, MaxInline: 64 << 10, MaxRequest: 1 << 20, NoAuthArgs: 10, NoAuthBulk: 16 << 10}
)

func TestReadCommand(t *testing.T) {
	big := strings.Repeat("x", fullLimits.MaxBulk)
	tests := []struct {
		name string
		in   string
		lim  CommandLimits
		want [][]string // the requests read before the error
		err  string     // "" for io.EOF after the requests
	}{
		{"multibulk", "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n", fullLimits,
			[][]string{{"SENTINEL", "get-master-addr-by-name", "mymaster"}}, ""},
		{"pipelined", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nPING\r\n$0\r\n\r\n", fullLimits, [][]string{{"PING"}, {"PING", ""}}, ""},
		{"binary bulk", "*2\r\n$4\r\nPING\r\n$4\r\na\r\nb\r\n", fullLimits, [][]string{{"PING", "a\r\nb"}}, ""},
		{"empty multibulks are skipped", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", fullLimits, [][]string{{"PING"}}, ""},
		{"largest bulk", "*1\r\n$65536\r\n" + big + "\r\n", fullLimits, [][]string{{big}}, ""},
		{"inline", "PING\r\nsentinel   get-master-addr-by-name\tmymaster\n", fullLimits,
			[][]string{{"PING"}, {"sentinel", "get-master-addr-by-name", "mymaster"}}, ""},
		{"inline empty lines are skipped", "\r\n  \r\nPING\r\n", fullLimits, [][]string{{"PING"}}, ""},
		{"inline quotes", `PING "a b\x41\n" 'c\'d' ""` + "\r\n", fullLimits, [][]string{{"PING", "a bA\n", "c'd", ""}}, ""},
		{"inline escapes", `PING "\t\r\b\a\\\"\q"` + "\r\n", fullLimits, [][]string{{"PING", "\t\r\b\a\\\"q"}}, ""},

		{"multibulk length not a number", "*x\r\n", fullLimits, nil, "invalid multibulk length"},
		{"multibulk length with a plus", "*+1\r\n", fullLimits, nil, "invalid multibulk length"},
		{"multibulk length line too long", "*" + strings.Repeat("1", 40) + "\r\n", fullLimits, nil, "invalid multibulk length"},
		{"too many arguments", "*1025\r\n", fullLimits, nil, "invalid multibulk length"},
		{"not a bulk", "*1\r\n+PING\r\n", fullLimits, nil, "expected '$', got '+'"},
		{"empty line for a bulk", "*1\r\n\r\n", fullLimits, nil, `expected '$', got '\n'`},
		{"negative bulk length", "*1\r\n$-1\r\n", fullLimits, nil, "invalid bulk length"},
		{"bulk too big", "*1\r\n$65537\r\n", fullLimits, nil, "invalid bulk length"},
		{"bulk length beyond int64", "*1\r\n$99999999999999999999\r\n", fullLimits, nil, "invalid bulk length"},
		{"request too big", "*20\r\n" + strings.Repeat("$65536\r\n"+big+"\r\n", 16) + "$1\r\n", fullLimits, nil, "request too big"},
		{"bulk without its CRLF", "*1\r\n$4\r\nPINGxx", fullLimits, nil, "expected CRLF after a bulk string"},
		{"unbalanced double quote", "PING \"a\r\n", fullLimits, nil, "unbalanced quotes in request"},
		{"closing quote followed by a letter", "PING \"a\"b\r\n", fullLimits, nil, "unbalanced quotes in request"},
		{"unbalanced single quote", "PING 'a\r\n", fullLimits, nil, "unbalanced quotes in request"},
		{"inline too big", strings.Repeat("a", fullLimits.MaxInline+1) + "\r\n", fullLimits, nil, "too big inline request"},
		{"inline with too many arguments", strings.Repeat("a ", 1025) + "\r\n", fullLimits, nil, "invalid multibulk length"},
		{"unauthenticated: too many arguments", "*11\r\n", noAuthLimits, nil, "unauthenticated multibulk length"},
		{"unauthenticated: more than the most arguments", "*1025\r\n", noAuthLimits, nil, "invalid multibulk length"},
		{"unauthenticated: bulk too big", "*1\r\n$16385\r\n", noAuthLimits, nil, "unauthenticated bulk length"},
		{"unauthenticated: within the limits", "*10\r\n" + strings.Repeat("$1\r\na\r\n", 10), noAuthLimits,
			[][]string{slices.Repeat([]string{"a"}, 10)}, ""},

		{"EOF inside a multibulk", "*2\r\n$4\r\nPING\r\n", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
		{"EOF inside a bulk", "*1\r\n$4\r\nPI", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
		{"EOF inside a multibulk length", "*2", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
		{"EOF inside an inline request", "PING", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A small buffer: lines longer than it are read in pieces.
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
			var got [][]string
			var err error
			for {
				var args []string
				if args, err = ReadCommand(br, tc.lim); err != nil {
					break
				}
				got = append(got, args)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("requests: got %q, want %q", got, tc.want)
			}
			checkReadErr(t, err, tc.err)
		})
	}
}

// TestCommandRoundTrip: what AppendCommand encodes, ReadCommand reads back.
func TestCommandRoundTrip(t *testing.T) {
	cmds := [][]string{
		{"PING"},
		{"SENTINEL", "get-master-addr-by-name", "harbor"},
		{"SET", "key", "", "a\r\nb", "\x00\xff"},
	}
	var b []byte
	for _, c := range cmds {
		b = AppendCommand(b, c...)
	}
	br := bufio.NewReader(strings.NewReader(string(b)))
	for _, want := range cmds {
		got, err := ReadCommand(br, fullLimits)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("ReadCommand = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadCommand(br, fullLimits); err != io.EOF {
		t.Fatalf("after the last command: %v, want io.EOF", err)
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"3", 3, true},
		{"-1", -1, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"-9223372036854775808", -1 << 63, true},
		{"9223372036854775808", 0, false},
		{"+1", 0, false},
		{"", 0, false},
		{" 1", 0, false},
		{"1x", 0, false},
		{"0x10", 0, false},
		{"000000000000000000001", 0, false}, // longer than any int64
	}
	for _, tc := range tests {
		if got, ok := ParseInt([]byte(tc.in)); got != tc.want || ok != tc.ok {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
