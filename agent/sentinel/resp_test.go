package sentinel

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReadCommand(t *testing.T) {
	big := strings.Repeat("x", maxBulk)
	tests := []struct {
		name string
		in   string
		lim  limits
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

		{"multibulk length not a number", "*x\r\n", fullLimits, nil, "Protocol error: invalid multibulk length"},
		{"multibulk length with a plus", "*+1\r\n", fullLimits, nil, "Protocol error: invalid multibulk length"},
		{"too many arguments", "*1025\r\n", fullLimits, nil, "Protocol error: invalid multibulk length"},
		{"not a bulk", "*1\r\n+PING\r\n", fullLimits, nil, "Protocol error: expected '$', got '+'"},
		{"negative bulk length", "*1\r\n$-1\r\n", fullLimits, nil, "Protocol error: invalid bulk length"},
		{"bulk too big", "*1\r\n$65537\r\n", fullLimits, nil, "Protocol error: invalid bulk length"},
		{"request too big", "*20\r\n" + strings.Repeat("$65536\r\n"+big+"\r\n", 16) + "$1\r\n", fullLimits, nil, "Protocol error: request too big"},
		{"bulk without its CRLF", "*1\r\n$4\r\nPINGxx", fullLimits, nil, "Protocol error: expected CRLF after a bulk string"},
		{"unbalanced double quote", "PING \"a\r\n", fullLimits, nil, "Protocol error: unbalanced quotes in request"},
		{"closing quote followed by a letter", "PING \"a\"b\r\n", fullLimits, nil, "Protocol error: unbalanced quotes in request"},
		{"unbalanced single quote", "PING 'a\r\n", fullLimits, nil, "Protocol error: unbalanced quotes in request"},
		{"inline too big", strings.Repeat("a", maxInline+1) + "\r\n", fullLimits, nil, "Protocol error: too big inline request"},
		{"unauthenticated: too many arguments", "*11\r\n", noAuthLimits, nil, "Protocol error: unauthenticated multibulk length"},
		{"unauthenticated: bulk too big", "*1\r\n$16385\r\n", noAuthLimits, nil, "Protocol error: unauthenticated bulk length"},
		{"unauthenticated: within the limits", "*10\r\n" + strings.Repeat("$1\r\na\r\n", 10), noAuthLimits,
			[][]string{slices.Repeat([]string{"a"}, 10)}, ""},

		{"EOF inside a multibulk", "*2\r\n$4\r\nPING\r\n", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
		{"EOF inside a bulk", "*1\r\n$4\r\nPI", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
		{"EOF inside an inline request", "PING", fullLimits, nil, io.ErrUnexpectedEOF.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), readBufferSize)
			var got [][]string
			var err error
			for {
				var args []string
				if args, err = readCommand(br, tc.lim); err != nil {
					break
				}
				got = append(got, args)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("requests: got %q, want %q", got, tc.want)
			}
			if tc.err == "" {
				if err != io.EOF {
					t.Errorf("error: got %v, want io.EOF", err)
				}
				return
			}
			if err == nil || err.Error() != tc.err {
				t.Errorf("error: got %v, want %q", err, tc.err)
			}
			var pe protocolError
			if strings.HasPrefix(tc.err, "Protocol error") != errors.As(err, &pe) {
				t.Errorf("error %v: protocolError is %v, want %v", err, errors.As(err, &pe), !errors.As(err, &pe))
			}
		})
	}
}

func TestWriter(t *testing.T) {
	tests := []struct {
		name         string
		write        func(w *writer)
		resp2, resp3 string
	}{
		{"simple", func(w *writer) { w.simple("OK") }, "+OK\r\n", "+OK\r\n"},
		{"error with line breaks", func(w *writer) { w.err("ERR a\r\nb") }, "-ERR a  b\r\n", "-ERR a  b\r\n"},
		{"int", func(w *writer) { w.int(-42) }, ":-42\r\n", ":-42\r\n"},
		{"bulk", func(w *writer) { w.bulk("a\r\nb") }, "$4\r\na\r\nb\r\n", "$4\r\na\r\nb\r\n"},
		{"empty bulk", func(w *writer) { w.bulk("") }, "$0\r\n\r\n", "$0\r\n\r\n"},
		{"null bulk", func(w *writer) { w.nullBulk() }, "$-1\r\n", "_\r\n"},
		{"null array", func(w *writer) { w.nullArray() }, "*-1\r\n", "_\r\n"},
		{"array", func(w *writer) { w.array(2); w.bulk("a"); w.int(1) }, "*2\r\n$1\r\na\r\n:1\r\n", "*2\r\n$1\r\na\r\n:1\r\n"},
		{"fields", func(w *writer) { w.fields([]string{"ip", "10.0.0.1", "port", "6379"}) },
			"*4\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n",
			"%2\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n"},
		{"empty map", func(w *writer) { w.mapHeader(0) }, "*0\r\n", "%0\r\n"},
		{"push", func(w *writer) { w.push(1); w.bulk("x") }, "*1\r\n$1\r\nx\r\n", ">1\r\n$1\r\nx\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for proto, want := range map[int]string{2: tc.resp2, 3: tc.resp3} {
				w := writer{proto: proto}
				tc.write(&w)
				if got := string(w.b); got != want {
					t.Errorf("RESP%d: got %q, want %q", proto, got, want)
				}
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "+switch-master", true},
		{"*", "", true},
		{"+switch-*", "+switch-master", true},
		{"+switch-*", "+sdown", false},
		{"+s?own", "+sdown", true},
		{"+s?own", "+sddown", false},
		{"**master", "+switch-master", true},
		{"*master*x", "+switch-master", false},
		{"[+-]sdown", "-sdown", true},
		{"[^+]sdown", "+sdown", false},
		{"[a-c]", "b", true},
		{"[c-a]", "b", true},
		{"[a-c]", "d", false},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`[\]]`, "]", true},
		{"a[bc", "ab", true},
		{"abc", "ab", false},
		{"ab", "abc", false},
	}
	for _, tc := range tests {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}
