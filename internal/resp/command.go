package resp

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// CommandLimits bound one request read by ReadCommand; exceeding them is a
// *ProtocolError with Redis's message. All four Max fields must be set.
type CommandLimits struct {
	MaxArgs    int // arguments of one request ("invalid multibulk length")
	MaxBulk    int // bytes of one argument ("invalid bulk length")
	MaxInline  int // bytes of an inline request ("too big inline request")
	MaxRequest int // bytes of all arguments of a multibulk request ("request too big")

	// NoAuthArgs and NoAuthBulk, when above zero, are the smaller bounds
	// Redis applies to a multibulk request of a client that has not
	// authenticated yet ("unauthenticated multibulk length",
	// "unauthenticated bulk length").
	NoAuthArgs, NoAuthBulk int
}

// ReadCommand reads one request as a Redis server does: multibulk (an
// array of bulk strings, "*2\r\n$4\r\nPING\r\n...", as clients send) or
// inline ("PING hello\r\n", as telnet sends, with redis-server's quoting).
// Empty requests (an empty line, "*0", "*-1") are skipped. It returns a
// *ProtocolError for a malformed or oversized request, io.EOF when the
// client closed between requests, and io.ErrUnexpectedEOF when it closed
// inside one.
func ReadCommand(br *bufio.Reader, lim CommandLimits) ([]string, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, err
		}
		var args []string
		if b[0] == '*' {
			args, err = readMultibulk(br, lim)
		} else {
			args, err = readInline(br, lim)
		}
		if err != nil || len(args) > 0 {
			return args, err
		}
	}
}

func readMultibulk(br *bufio.Reader, lim CommandLimits) ([]string, error) {
	line, err := readLine(br, 32, "invalid multibulk length")
	if err != nil {
		return nil, err
	}
	n, ok := ParseInt(line[1:])
	if !ok || n > int64(lim.MaxArgs) {
		return nil, protocolErr("invalid multibulk length")
	}
	if lim.NoAuthArgs > 0 && n > int64(lim.NoAuthArgs) {
		return nil, protocolErr("unauthenticated multibulk length")
	}
	if n <= 0 {
		return nil, nil
	}
	// Arguments are allocated as they arrive: a client that announces
	// MaxArgs of them and sends none costs what it sent.
	args := make([]string, 0, min(n, 16))
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
			return nil, protocolErr(fmt.Sprintf("expected '$', got '%s'", got))
		}
		size, ok := ParseInt(line[1:])
		if !ok || size < 0 || size > int64(lim.MaxBulk) {
			return nil, protocolErr("invalid bulk length")
		}
		if lim.NoAuthBulk > 0 && size > int64(lim.NoAuthBulk) {
			return nil, protocolErr("unauthenticated bulk length")
		}
		if total += int(size); total > lim.MaxRequest {
			return nil, protocolErr("request too big")
		}
		arg, err := readBulk(br, int(size), "expected CRLF after a bulk string")
		if err != nil {
			return nil, err
		}
		args = append(args, arg)
	}
	return args, nil
}

func readInline(br *bufio.Reader, lim CommandLimits) ([]string, error) {
	line, err := readLine(br, lim.MaxInline, "too big inline request")
	if err != nil {
		return nil, err
	}
	args, ok := splitArgs(string(line))
	if !ok {
		return nil, protocolErr("unbalanced quotes in request")
	}
	if len(args) > lim.MaxArgs {
		return nil, protocolErr("invalid multibulk length")
	}
	return args, nil
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
