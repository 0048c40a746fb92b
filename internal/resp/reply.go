package resp

import (
	"bufio"
	"fmt"
)

// Defaults of Limits, taken by its zero fields. INFO is a few KiB, CONFIG
// GET a few pairs, SENTINEL replicas an array of arrays.
const (
	DefaultMaxBulk  = 4 << 20
	DefaultMaxArray = 1024
	DefaultMaxDepth = 4
)

// maxReplyLine bounds a reply's first line: a simple string, an error, or
// a type and length.
const maxReplyLine = 64 << 10

// Limits bound what ReadReply accepts; a zero field takes its default. A
// reply beyond them is a *ProtocolError. Elements of an array and bytes
// of a bulk string are allocated as they arrive, so MaxArray and MaxBulk
// bound what a peer can announce, not what it makes us allocate up front.
type Limits struct {
	MaxBulk  int // bytes of one bulk string
	MaxArray int // elements of one array
	MaxDepth int // levels of arrays: 1 allows no array inside an array
}

func (l Limits) withDefaults() Limits {
	if l.MaxBulk <= 0 {
		l.MaxBulk = DefaultMaxBulk
	}
	if l.MaxArray <= 0 {
		l.MaxArray = DefaultMaxArray
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// ReadReply reads one RESP2 reply from br and returns it as a string (a
// simple or bulk string), an int64, nil (the null bulk string or null
// array), a []any of these, or a *Error for an error reply (an element of
// an array may be one too). The error is io.EOF when br ended before the
// reply, io.ErrUnexpectedEOF when it ended inside it, a *ProtocolError for
// input that is not a RESP2 reply or exceeds lim, or br's own error (a
// deadline, say). After an error the stream is out of step: close it.
func ReadReply(br *bufio.Reader, lim Limits) (any, error) {
	return readReply(br, lim.withDefaults(), 0)
}

func readReply(br *bufio.Reader, lim Limits, depth int) (any, error) {
	line, err := readLine(br, maxReplyLine, "reply line too long; is it a Redis server?")
	if err != nil {
		if depth > 0 {
			return nil, eofInside(err)
		}
		return nil, err
	}
	if len(line) == 0 {
		return nil, protocolErr("empty reply line; is it a Redis server?")
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return &Error{Msg: string(line[1:])}, nil
	case ':':
		n, ok := ParseInt(line[1:])
		if !ok {
			return nil, protocolErr(fmt.Sprintf("bad integer reply %q", clip(line, 32)))
		}
		return n, nil
	case '$':
		n, ok := ParseInt(line[1:])
		if !ok || n < -1 || n > int64(lim.MaxBulk) {
			return nil, protocolErr(fmt.Sprintf("bad bulk length in %q", clip(line, 32)))
		}
		if n == -1 {
			return nil, nil
		}
		return readBulk(br, int(n), "bulk reply not terminated by CRLF")
	case '*':
		n, ok := ParseInt(line[1:])
		if !ok || n < -1 || n > int64(lim.MaxArray) || depth >= lim.MaxDepth {
			return nil, protocolErr(fmt.Sprintf("bad array reply %q", clip(line, 32)))
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, 0, min(n, 64))
		for range n {
			v, err := readReply(br, lim, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, protocolErr(fmt.Sprintf("unexpected reply %q; is it a Redis server?", clip(line, 32)))
}
