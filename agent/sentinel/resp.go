package sentinel

import (
	"strconv"
	"strings"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// Request limits. Sentinel commands are a few short words; the limits keep a
// client from making the server buffer more than maxRequest bytes per
// request. Clients that must authenticate first get Redis's own, smaller
// limits until they have.
const (
	maxArgs          = 1024
	maxBulk          = 64 << 10
	maxInline        = 64 << 10
	maxRequest       = 1 << 20
	maxArgsNoAuth    = 10
	maxBulkNoAuth    = 16 << 10
	readBufferSize   = 16 << 10
	maxPendingOutput = 1 << 20 // replies and messages not yet written
)

// Subscription limits per connection. Sentinel clients subscribe to a few
// short channels ("+switch-master"); the limits bound what one connection
// makes the server keep and match on every publish.
const (
	maxChannels         = 64  // SUBSCRIBE channels
	maxPatterns         = 64  // PSUBSCRIBE patterns
	maxSubscriptionName = 128 // bytes of a channel or pattern
)

// requestLimits returns the limits of the next request of a client that
// has authenticated or not. Requests are read with resp.ReadCommand.
func requestLimits(authed bool) resp.CommandLimits {
	lim := resp.CommandLimits{MaxArgs: maxArgs, MaxBulk: maxBulk, MaxInline: maxInline, MaxRequest: maxRequest}
	if !authed {
		lim.NoAuthArgs, lim.NoAuthBulk = maxArgsNoAuth, maxBulkNoAuth
	}
	return lim
}

// writer encodes replies into a buffer, in RESP2 or RESP3 (proto 2 or 3).
// The RESP3 types the server uses are maps, pushes and the null; in RESP2
// they become flat arrays, arrays and the null bulk or null array.
type writer struct {
	b     []byte
	proto int
}

func (w *writer) line(prefix byte, s string) {
	w.b = append(w.b, prefix)
	w.b = append(w.b, s...)
	w.b = append(w.b, '\r', '\n')
}

func (w *writer) header(prefix byte, n int) {
	w.b = append(w.b, prefix)
	w.b = strconv.AppendInt(w.b, int64(n), 10)
	w.b = append(w.b, '\r', '\n')
}

// simple writes a status reply, "+OK".
func (w *writer) simple(s string) { w.line('+', s) }

// err writes an error reply; msg starts with its code ("ERR ...",
// "NOAUTH ..."). Line breaks in msg become spaces, as Redis does.
func (w *writer) err(msg string) {
	msg = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, msg)
	w.line('-', msg)
}

// int writes an integer reply.
func (w *writer) int(n int64) {
	w.b = append(w.b, ':')
	w.b = strconv.AppendInt(w.b, n, 10)
	w.b = append(w.b, '\r', '\n')
}

// bulk writes a bulk string.
func (w *writer) bulk(s string) {
	w.header('$', len(s))
	w.b = append(w.b, s...)
	w.b = append(w.b, '\r', '\n')
}

// nullBulk writes a missing string: "$-1" in RESP2, "_" in RESP3.
func (w *writer) nullBulk() {
	if w.proto == 3 {
		w.b = append(w.b, "_\r\n"...)
		return
	}
	w.b = append(w.b, "$-1\r\n"...)
}

// nullArray writes a missing array: "*-1" in RESP2, "_" in RESP3.
func (w *writer) nullArray() {
	if w.proto == 3 {
		w.b = append(w.b, "_\r\n"...)
		return
	}
	w.b = append(w.b, "*-1\r\n"...)
}

// array writes the header of an array of n elements.
func (w *writer) array(n int) { w.header('*', n) }

// mapHeader writes the header of a map of n pairs: "%n" in RESP3, an array
// of 2n elements in RESP2.
func (w *writer) mapHeader(n int) {
	if w.proto == 3 {
		w.header('%', n)
		return
	}
	w.header('*', 2*n)
}

// push writes the header of an out-of-band message of n elements: ">n" in
// RESP3, an array in RESP2.
func (w *writer) push(n int) {
	if w.proto == 3 {
		w.header('>', n)
		return
	}
	w.header('*', n)
}

// fields writes ordered field/value pairs as a map of bulk strings.
func (w *writer) fields(kv []string) {
	w.mapHeader(len(kv) / 2)
	for _, s := range kv {
		w.bulk(s)
	}
}

// reset empties the buffer, keeping its memory.
func (w *writer) reset() { w.b = w.b[:0] }
