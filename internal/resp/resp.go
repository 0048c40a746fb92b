// Package resp is the Redis serialization protocol (RESP2) as harbormaster
// speaks it, in both directions: clients (agent/redisctl, the redis check
// in agent/checks, the lab's observers in chaos/scenario) encode commands
// with AppendCommand and read replies with ReadReply; the Sentinel-protocol
// server (agent/sentinel) reads requests with ReadCommand.
//
// Every length a peer sends is bounded before anything is allocated for
// it, so a peer that is not Redis, or a broken one, cannot make us buffer
// more than the limits the caller chose. Reading is synchronous on a
// *bufio.Reader the caller owns; deadlines and cancellation are the
// caller's, set on the connection.
package resp

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Error is an error reply, e.g. "READONLY You can't write against a read
// only replica." or "WRONGPASS invalid username-password pair or user is
// disabled.". It is a value of ReadReply, not a failure to read: the
// connection stays usable after it.
type Error struct {
	Msg string // the reply without its leading '-'
}

func (e *Error) Error() string { return e.Msg }

// Prefix returns the error code, the reply's first word: READONLY,
// NOREPLICAS, WRONGPASS, NOAUTH, ERR ...
func (e *Error) Prefix() string {
	code, _, _ := strings.Cut(e.Msg, " ")
	return code
}

// ProtocolError is malformed or oversized input: a reply no Redis server
// sends, or a request Redis refuses. Msg says what was wrong, in Redis's
// words for requests ("invalid bulk length"). The stream is out of step
// after it: the connection must be closed.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return e.Msg }

func protocolErr(msg string) error { return &ProtocolError{Msg: msg} }

// AppendCommand appends a command as Redis clients send it, an array of
// bulk strings ("*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n"), to b. Arguments may
// hold any bytes.
func AppendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// readLine returns the next line without its "\n" or "\r\n". A line
// longer than max bytes is a *ProtocolError with message tooLong. It
// returns io.EOF when the stream ends before the line starts and
// io.ErrUnexpectedEOF when it ends inside it.
func readLine(br *bufio.Reader, max int, tooLong string) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max+2 {
			return nil, protocolErr(tooLong)
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

// bulkChunk is what readBulk allocates ahead of the bytes that arrive.
const bulkChunk = 64 << 10

// readBulk reads n bytes and the CRLF after them; a missing CRLF is a
// *ProtocolError with message noCRLF. The buffer grows as the bytes
// arrive, at most bulkChunk ahead of them: a peer that announces a large
// bulk string and sends nothing costs that much, not the announced length.
func readBulk(br *bufio.Reader, n int, noCRLF string) (string, error) {
	buf := make([]byte, 0, min(n+2, bulkChunk))
	for len(buf) < n+2 {
		k := min(n+2-len(buf), bulkChunk)
		buf = slices.Grow(buf, k)
		got, err := io.ReadFull(br, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+got]
		if err != nil {
			return "", eofInside(err)
		}
	}
	if buf[n] != '\r' || buf[n+1] != '\n' {
		return "", protocolErr(noCRLF)
	}
	return string(buf[:n]), nil
}

// eofInside turns an EOF in the middle of a reply or request into
// io.ErrUnexpectedEOF.
func eofInside(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ParseInt parses a decimal integer strictly, as Redis parses lengths and
// integer arguments: an optional '-', then digits, nothing else, within
// int64.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 || b[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// clip shortens s to n bytes for an error message.
func clip(s []byte, n int) string {
	if len(s) <= n {
		return string(s)
	}
	return string(s[:n]) + "..."
}
