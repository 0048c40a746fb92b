package sentinel

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// TestRequestLimits: the limits handed to resp.ReadCommand are Redis's,
// and its smaller ones before authentication (resp's tests read requests
// against them).
func TestRequestLimits(t *testing.T) {
	in := "*11\r\n" + strings.Repeat("$1\r\na\r\n", 11)
	if args, err := resp.ReadCommand(bufio.NewReader(strings.NewReader(in)), requestLimits(true)); err != nil || len(args) != 11 {
		t.Errorf("authenticated, 11 arguments: %q, %v", args, err)
	}
	_, err := resp.ReadCommand(bufio.NewReader(strings.NewReader(in)), requestLimits(false))
	if err == nil || err.Error() != "unauthenticated multibulk length" {
		t.Errorf("unauthenticated, 11 arguments: %v, want unauthenticated multibulk length", err)
	}
	big := "*1\r\n$" + strconv.Itoa(maxBulk) + "\r\n" + strings.Repeat("x", maxBulk) + "\r\n"
	if args, err := resp.ReadCommand(bufio.NewReaderSize(strings.NewReader(big), readBufferSize), requestLimits(true)); err != nil || len(args) != 1 {
		t.Errorf("authenticated, one argument of maxBulk bytes: %v", err)
	}
	_, err = resp.ReadCommand(bufio.NewReaderSize(strings.NewReader(big), readBufferSize), requestLimits(false))
	if err == nil || err.Error() != "unauthenticated bulk length" {
		t.Errorf("unauthenticated, one argument of maxBulk bytes: %v, want unauthenticated bulk length", err)
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
