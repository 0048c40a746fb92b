package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime/metrics"
	"slices"
	"strconv"
	"testing"
)

// Limits the fuzz target reads with. The big ones are far above any input
// the fuzzer makes, so a reader that allocates what a peer announces
// instead of what arrived shows up as an allocation far above the input's
// size (see allocBudget).
var (
	fuzzBigReply   = Limits{MaxBulk: 64 << 20, MaxArray: 1 << 24, MaxDepth: 8}
	fuzzSmallReply = Limits{MaxBulk: 16, MaxArray: 4, MaxDepth: 2}
	fuzzBigCommand = CommandLimits{MaxArgs: 1 << 24, MaxBulk: 64 << 20, MaxInline: 64 << 10, MaxRequest: 64 << 20}
)

// allocBudget is what reading input of n bytes may allocate: a read chunk
// ahead of what arrived (bulkChunk), the reader itself, and a bounded
// amount per input byte (an array header of 3 bytes allocates room for up
// to 64 elements), with room for the runtime's accounting of small
// objects, which counts a cached span at a time. An announced length of
// 64 MiB allocated up front is far above it.
func allocBudget(n int) uint64 { return 1<<20 + 1024*uint64(n) }

// allocated returns the bytes fn allocated on the heap, as the runtime
// accounts them: large objects at once, small ones a span at a time.
// (runtime/metrics rather than runtime.ReadMemStats, which stops the world
// and would slow the fuzzer a hundredfold.)
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// FuzzRESP feeds arbitrary bytes to ReadReply and ReadCommand, as a peer
// that is not Redis (or a hostile client of the Sentinel listener) would.
// Neither may panic, allocate much beyond what arrived, or fail with an
// error other than io.EOF, io.ErrUnexpectedEOF or a *ProtocolError; what
// they read is within the limits, and re-encodes to bytes that read back
// to the same values.
func FuzzRESP(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n",
		"-READONLY You can't write against a read only replica.\r\n",
		":-42\r\n:0\r\n",
		"$5\r\na\r\nbc\r\n$-1\r\n*-1\r\n*0\r\n",
		"*5\r\n$21\r\nmin-replicas-to-write\r\n:7\r\n*-1\r\n+OK\r\n-ERR no\r\n",
		"*2\r\n*2\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n*0\r\n",
		"*2147483647\r\n",
		"$999999999999\r\n",
		"*1\r\n$2147483647\r\n",
		"*1000000\r\n$4\r\nPING\r\n",
		"$4194304\r\nab",
		"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n",
		"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nPING\r\n$0\r\n\r\n",
		"PING\r\nsentinel   get-master-addr-by-name\tmymaster\n",
		`PING "a b\x41\n" 'c\'d' ""` + "\r\n",
		"*11\r\n" + "$1\r\na\r\n",
		"\r\n  \r\nPING\r\n",
		"HTTP/1.1 400 Bad Request\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		budget := allocBudget(len(data))
		var replies []any
		var err error
		if n := allocated(func() { replies, err = readAllReplies(data, fuzzBigReply) }); n > budget {
			t.Fatalf("ReadReply of %d bytes allocated %d bytes, want at most %d", len(data), n, budget)
		}
		checkStreamErr(t, "ReadReply", err)
		for _, v := range replies {
			checkReply(t, v, fuzzBigReply, 1)
		}
		// Re-encoded, the replies read back the same.
		var enc []byte
		for _, v := range replies {
			enc = appendReply(enc, v)
		}
		again, err := readAllReplies(enc, fuzzBigReply)
		if err != io.EOF || !slices.EqualFunc(again, replies, reflect.DeepEqual) {
			t.Fatalf("re-encoded replies %q read back as %#v, %v; want %#v, EOF", enc, again, err, replies)
		}
		// What smaller limits accept, larger ones accept alike.
		for _, lim := range []Limits{{}, fuzzSmallReply} {
			small, err := readAllReplies(data, lim)
			checkStreamErr(t, "ReadReply", err)
			if len(small) > len(replies) || !slices.EqualFunc(small, replies[:len(small)], reflect.DeepEqual) {
				t.Fatalf("with limits %+v read %#v; not a prefix of %#v read with larger ones", lim, small, replies)
			}
		}

		for _, lim := range []CommandLimits{fuzzBigCommand, fullLimits, noAuthLimits} {
			var cmds [][]string
			if n := allocated(func() { cmds, err = readAllCommands(data, lim) }); n > budget {
				t.Fatalf("ReadCommand(%+v) of %d bytes allocated %d bytes, want at most %d", lim, len(data), n, budget)
			}
			checkStreamErr(t, "ReadCommand", err)
			var enc []byte
			for _, args := range cmds {
				checkCommand(t, args, lim)
				enc = AppendCommand(enc, args...)
			}
			// Inline requests are not held to the unauthenticated limits
			// (as in Redis: MaxInline bounds them), so read them back with
			// the authenticated ones.
			lim.NoAuthArgs, lim.NoAuthBulk = 0, 0
			again, err := readAllCommands(enc, lim)
			if err != io.EOF || !slices.EqualFunc(again, cmds, slices.Equal) {
				t.Fatalf("re-encoded requests %q read back as %q, %v; want %q, EOF", enc, again, err, cmds)
			}
		}
	})
}

func readAllReplies(data []byte, lim Limits) ([]any, error) {
	// A small buffer: lines longer than it are read in pieces.
	br := bufio.NewReaderSize(bytes.NewReader(data), 16)
	var out []any
	for {
		v, err := ReadReply(br, lim)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
}

func readAllCommands(data []byte, lim CommandLimits) ([][]string, error) {
	br := bufio.NewReaderSize(bytes.NewReader(data), 16)
	var out [][]string
	for {
		args, err := ReadCommand(br, lim)
		if err != nil {
			return out, err
		}
		out = append(out, args)
	}
}

// checkStreamErr checks what ended reading a byte slice.
func checkStreamErr(t *testing.T, what string, err error) {
	t.Helper()
	var pe *ProtocolError
	if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &pe) {
		t.Fatalf("%s: error %T %v, want io.EOF, io.ErrUnexpectedEOF or a *ProtocolError", what, err, err)
	}
}

// checkReply checks that v is one of ReadReply's types, within lim, at
// nesting depth (1 for a top-level value).
func checkReply(t *testing.T, v any, lim Limits, depth int) {
	t.Helper()
	switch v := v.(type) {
	case nil, int64, *Error:
	case string:
		if len(v) > max(lim.MaxBulk, maxReplyLine) {
			t.Fatalf("string of %d bytes, above MaxBulk %d and the line limit", len(v), lim.MaxBulk)
		}
	case []any:
		if v == nil || len(v) > lim.MaxArray || depth > lim.MaxDepth {
			t.Fatalf("array of %d elements at depth %d (nil %v); limits %+v", len(v), depth, v == nil, lim)
		}
		for _, e := range v {
			checkReply(t, e, lim, depth+1)
		}
	default:
		t.Fatalf("ReadReply returned a %T", v)
	}
}

// checkCommand checks one request ReadCommand returned against lim.
func checkCommand(t *testing.T, args []string, lim CommandLimits) {
	t.Helper()
	if len(args) == 0 || len(args) > lim.MaxArgs {
		t.Fatalf("request of %d arguments, want 1 to %d", len(args), lim.MaxArgs)
	}
	total := 0
	for _, a := range args {
		if len(a) > max(lim.MaxBulk, lim.MaxInline) {
			t.Fatalf("argument of %d bytes, above MaxBulk %d and MaxInline %d", len(a), lim.MaxBulk, lim.MaxInline)
		}
		total += len(a)
	}
	if total > max(lim.MaxRequest, lim.MaxInline) {
		t.Fatalf("request of %d bytes, above MaxRequest %d and MaxInline %d", total, lim.MaxRequest, lim.MaxInline)
	}
}

// appendReply encodes a value of ReadReply as a server would (a string as
// a bulk string, nil as the null bulk string).
func appendReply(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "$-1\r\n"...)
	case string:
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, "\r\n"...)
		b = append(b, v...)
		return append(b, "\r\n"...)
	case int64:
		b = append(b, ':')
		b = strconv.AppendInt(b, v, 10)
		return append(b, "\r\n"...)
	case *Error:
		b = append(b, '-')
		b = append(b, v.Msg...)
		return append(b, "\r\n"...)
	case []any:
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, "\r\n"...)
		for _, e := range v {
			b = appendReply(b, e)
		}
		return b
	}
	panic("appendReply: unexpected type")
}
