package sentinel

// globMatch reports whether s matches the Redis glob pattern (as PSUBSCRIBE
// uses it): * and ? and [abc], [^a], [a-z] classes, \ escapes the next
// character (a trailing \ is itself). An unterminated class ends at the end
// of the pattern, as in Redis.
//
// It runs in O(len(pattern) * len(s)) time and constant space, whatever the
// pattern: it walks both strings once and, on a mismatch, backtracks only to
// the last star (the text after a star can always be matched leftmost,
// since every other token matches exactly one byte). Redis's own recursive
// matcher is exponential in the number of stars.
func globMatch(pattern, s string) bool {
	ok, _ := globMatchSteps(pattern, s)
	return ok
}

// globMatchSteps is globMatch that also counts its steps: the pattern bytes
// it examined, for tests of the time bound.
func globMatchSteps(p, s string) (match bool, steps int) {
	pi, si := 0, 0
	star, starS := -1, 0 // the pattern index after the last star, and where its match ended in s
	for si < len(s) {
		steps++
		if pi < len(p) {
			switch p[pi] {
			case '*':
				for pi < len(p) && p[pi] == '*' {
					pi++
					steps++
				}
				if pi == len(p) {
					return true, steps
				}
				star, starS = pi, si
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				rest, ok := matchClass(p[pi+1:], s[si])
				steps += len(p) - pi - len(rest)
				if ok {
					pi = len(p) - len(rest)
					si++
					continue
				}
			case '\\':
				lit, n := p[pi], 1
				if pi+1 < len(p) {
					lit, n = p[pi+1], 2
				}
				if s[si] == lit {
					pi += n
					si++
					continue
				}
			default:
				if s[si] == p[pi] {
					pi++
					si++
					continue
				}
			}
		}
		if star < 0 {
			return false, steps
		}
		// Let the last star take one more byte and retry the rest.
		starS++
		pi, si = star, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
		steps++
	}
	return pi == len(p), steps
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
