// Package kaimport translates keepalived configurations (keepalived.conf,
// one per node) into harbormaster node configs and a cluster spec, and lints
// what keepalived accepts silently: unknown keywords, scripts no instance
// tracks, check commands that cannot succeed, VIPs outside the interface's
// subnet, conflicting router ids and tied priorities.
//
// It is pure but for reading the input files (and, with Options.ScriptsRoot,
// the check scripts they name): the caller writes the output.
package kaimport

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxFileSize bounds one keepalived.conf.
const MaxFileSize = 1 << 20

// node is one statement of a keepalived.conf: a keyword, its arguments on
// the same line, and the statements of its { } block, if it has one.
type node struct {
	Key   string
	Args  []string
	Block []*node // nil: no block; non-nil (maybe empty): a block
	File  string
	Line  int
}

func (n *node) hasBlock() bool { return n.Block != nil }

// ParseError is input that cannot be read as a keepalived.conf. It names the
// file and line.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// token is a word (Quoted when it came from "..."), a brace or a newline.
type token struct {
	Text   string
	Quoted bool
	Line   int
}

const (
	tokOpen    = "{"
	tokClose   = "}"
	tokNewline = "\n"
)

// tokenize splits a keepalived.conf into words, braces and newlines.
// Comments start at # or ! outside quotes and run to the end of the line.
// A double-quoted string is one word (keepalived's QUOTED-STRING); an
// unquoted word ends at white space or a brace.
func tokenize(file string, src string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			toks = append(toks, token{Text: tokNewline, Line: line})
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || c == '!':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '{' || c == '}':
			toks = append(toks, token{Text: string(c), Line: line})
			i++
		case c == '"':
			j := strings.IndexAny(src[i+1:], "\"\n")
			if j < 0 || src[i+1+j] == '\n' {
				return nil, &ParseError{File: file, Line: line, Msg: "unterminated quoted string; close it with \" on the same line"}
			}
			toks = append(toks, token{Text: src[i+1 : i+1+j], Quoted: true, Line: line})
			i += j + 2
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n{}\"", rune(src[j])) {
				j++
			}
			toks = append(toks, token{Text: src[i:j], Line: line})
			i = j
		}
	}
	return toks, nil
}

// parse reads a keepalived.conf into its statements. A statement ends at
// the end of its line; "{" (on the line, or alone on the next) opens its
// block, which ends at the matching "}". include is refused: the importer
// reads exactly the files it is given.
func parse(file string, src string) ([]*node, error) {
	toks, err := tokenize(file, src)
	if err != nil {
		return nil, err
	}
	p := &parser{file: file, toks: toks}
	nodes, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, &ParseError{File: file, Line: p.toks[p.pos].Line, Msg: "\"}\" closes no block; remove it or add the block's opening line"}
	}
	return nodes, nil
}

type parser struct {
	file string
	toks []token
	pos  int
}

// block reads statements until a "}" (left unread) or the end.
func (p *parser) block(openLine int) ([]*node, error) {
	nodes := []*node{}
	var last *node
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		switch {
		case t.Text == tokNewline && !t.Quoted:
			p.pos++
		case t.Text == tokClose && !t.Quoted:
			if openLine == 0 {
				return nil, &ParseError{File: p.file, Line: t.Line, Msg: "\"}\" closes no block; remove it or add the block's opening line"}
			}
			return nodes, nil
		case t.Text == tokOpen && !t.Quoted:
			// A "{" alone on a line opens the block of the statement above.
			if last == nil || last.hasBlock() {
				return nil, &ParseError{File: p.file, Line: t.Line, Msg: "\"{\" opens a block without a keyword; put it after the block's keyword (vrrp_instance NAME {)"}
			}
			if err := p.openBlock(last); err != nil {
				return nil, err
			}
		default:
			n := &node{Key: t.Text, File: p.file, Line: t.Line}
			p.pos++
			for p.pos < len(p.toks) {
				a := p.toks[p.pos]
				if !a.Quoted && (a.Text == tokNewline || a.Text == tokOpen || a.Text == tokClose) {
					break
				}
				n.Args = append(n.Args, a.Text)
				p.pos++
			}
			if n.Key == "include" {
				return nil, &ParseError{File: p.file, Line: n.Line, Msg: "include is not followed; give the included files' content inline in this node's file (one file per node)"}
			}
			if p.pos < len(p.toks) && p.toks[p.pos].Text == tokOpen && !p.toks[p.pos].Quoted {
				if err := p.openBlock(n); err != nil {
					return nil, err
				}
			}
			nodes = append(nodes, n)
			last = n
		}
	}
	if openLine != 0 {
		return nil, &ParseError{File: p.file, Line: openLine, Msg: "this block's \"{\" is never closed; add the missing \"}\""}
	}
	return nodes, nil
}

// openBlock reads the block whose "{" is at p.pos into n.
func (p *parser) openBlock(n *node) error {
	open := p.toks[p.pos].Line
	p.pos++
	kids, err := p.block(open)
	if err != nil {
		return err
	}
	p.pos++ // the "}"
	n.Block = kids
	return nil
}

// parseFile reads and parses one keepalived.conf.
func parseFile(path string) ([]*node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes; a keepalived.conf is a few KiB", path, MaxFileSize)
	}
	return parse(path, string(b))
}
