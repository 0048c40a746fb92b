package sentinel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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

// protocolError is a malformed request. The server replies "-ERR Protocol
// error: <msg>" and closes the connection, as Redis does.
type protocolError string

func (e protocolError) Error() string { return "Protocol error: " + string(e) }

// limits bounds one request.
type limits struct {
	args, bulk int
	auth       bool // the limits are the unauthenticated ones
}

var (
	fullLimits   = limits{args: maxArgs, bulk: maxBulk}
	noAuthLimits = limits{args: maxArgsNoAuth, bulk: maxBulkNoAuth, auth: true}
)

// readCommand reads one request, multibulk ("*2\r\n$4\r\nPING\r\n...") or
// inline ("PING hello\r\n", as telnet sends). Empty requests (an empty line,
// "*0") are skipped. It returns a protocolError for malformed or oversized
// requests, io.EOF when the client closed between requests, and
// io.ErrUnexpectedEOF when it closed inside one.
func readCommand(br *bufio.Reader, lim limits) ([]string, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, err
		}
		var args []string
		if b[0] == '*' {
			args, err = readMultibulk(br, lim)
		} else {
			args, err = readInline(br)
		}
		if err != nil || len(args) > 0 {
			return args, err
		}
	}
}

// readLine returns the next line without its "\n" or "\r\n". Lines longer
// than max are a protocol error with message tooLong.
func readLine(br *bufio.Reader, max int, tooLong string) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max+2 {
			return nil, protocolError(tooLong)
		}
		switch {
		case err == nil:
			if line == nil {
				line = frag
			} else {
				line = append(line, frag...)
			}
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			line = append(line, frag...)
		case errors.Is(err, io.EOF) && len(line)+len(frag) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func readMultibulk(br *bufio.Reader, lim limits) ([]string, error) {
	line, err := readLine(br, 32, "invalid multibulk length")
	if err != nil {
		return nil, err
	}
	n, ok := parseInt(line[1:])
	if !ok || n > maxArgs {
		return nil, protocolError("invalid multibulk length")
	}
	if lim.auth && n > int64(lim.args) {
		return nil, protocolError("unauthenticated multibulk length")
	}
	if n <= 0 {
		return nil, nil
	}
	args := make([]string, 0, n)
	total := 0
	for range n {
		line, err := readLine(br, 32, "invalid bulk length")
		if err != nil {
			return nil, eofInside(err)
		}
		if len(line) == 0 || line[0] != '$' {
			got := "\\n"
			if len(line) > 0 {
				got = string(line[:1])
			}
			return nil, protocolError(fmt.Sprintf("expected '$', got '%s'", got))
		}
		size, ok := parseInt(line[1:])
		if !ok || size < 0 || size > maxBulk {
			return nil, protocolError("invalid bulk length")
		}
		if lim.auth && size > int64(lim.bulk) {
			return nil, protocolError("unauthenticated bulk length")
		}
		if total += int(size); total > maxRequest {
			return nil, protocolError("request too big")
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, eofInside(err)
		}
		if buf[size] != '\r' || buf[size+1] != '\n' {
			return nil, protocolError("expected CRLF after a bulk string")
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

func readInline(br *bufio.Reader) ([]string, error) {
	line, err := readLine(br, maxInline, "too big inline request")
	if err != nil {
		return nil, err
	}
	args, ok := splitArgs(string(line))
	if !ok {
		return nil, protocolError("unbalanced quotes in request")
	}
	if len(args) > maxArgs {
		return nil, protocolError("invalid multibulk length")
	}
	return args, nil
}

// eofInside turns an EOF in the middle of a request into io.ErrUnexpectedEOF.
func eofInside(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseInt parses a decimal integer strictly: an optional '-', then digits,
// nothing else.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 || b[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// splitArgs splits an inline request into words as redis-server does
// (sdssplitargs): words are separated by spaces or tabs; "double quotes"
// take the escapes \n \r \t \b \a \\ \" and \xHH; 'single quotes' take \'.
// A closing quote must be followed by a space or the end. ok is false for
// unbalanced quotes.
func splitArgs(line string) (args []string, ok bool) {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		var word strings.Builder
		inDouble, inSingle := false, false
	word:
		for {
			if i == len(line) {
				if inDouble || inSingle {
					return nil, false
				}
				break
			}
			c := line[i]
			switch {
			case inDouble:
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					v, _ := strconv.ParseUint(line[i+2:i+4], 16, 8)
					word.WriteByte(byte(v))
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					word.WriteByte(unescape(line[i]))
				case c == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					inDouble = false
					i++
					break word
				default:
					word.WriteByte(c)
				}
			case inSingle:
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					i++
					word.WriteByte('\'')
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					inSingle = false
					i++
					break word
				default:
					word.WriteByte(c)
				}
			default:
				switch c {
				case ' ', '\t', '\n', '\r', 0:
					break word
				case '"':
					inDouble = true
				case '\'':
					inSingle = true
				default:
					word.WriteByte(c)
				}
			}
			i++
		}
		args = append(args, word.String())
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0 }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
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

// globMatch reports whether s matches the Redis glob pattern (as PSUBSCRIBE
// uses it): * and ? and [abc], [^a], [a-z] classes, \ escapes the next
// character.
func globMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			s = s[1:]
			pattern = pattern[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			rest, ok := matchClass(pattern[1:], s[0])
			if !ok {
				return false
			}
			pattern = rest
			s = s[1:]
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || s[0] != pattern[0] {
				return false
			}
			s = s[1:]
			pattern = pattern[1:]
		}
	}
	return len(s) == 0
}

// matchClass matches c against the class that starts after '[' in p and
// returns the pattern after the class. An unterminated class ends at the end
// of the pattern, as in Redis.
func matchClass(p string, c byte) (rest string, ok bool) {
	negate := false
	if len(p) > 0 && p[0] == '^' {
		negate = true
		p = p[1:]
	}
	match := false
	for len(p) > 0 && p[0] != ']' {
		switch {
		case p[0] == '\\' && len(p) >= 2:
			match = match || p[1] == c
			p = p[2:]
		case len(p) >= 3 && p[1] == '-' && p[2] != ']':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			match = match || lo <= c && c <= hi
			p = p[3:]
		default:
			match = match || p[0] == c
			p = p[1:]
		}
	}
	if len(p) > 0 {
		p = p[1:] // the ']'
	}
	return p, match != negate
}
