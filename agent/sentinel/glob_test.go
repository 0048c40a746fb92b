package sentinel

import (
	"strings"
	"testing"
)

// globRef is the recursive matcher the server used before globMatch: Redis's
// semantics, written plainly, exponential on many stars. It is the reference
// the table and the fuzz target compare globMatch with.
func globRef(pattern, s string) bool {
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
				if globRef(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			s, pattern = s[1:], pattern[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			rest, ok := matchClass(pattern[1:], s[0])
			if !ok {
				return false
			}
			pattern, s = rest, s[1:]
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || s[0] != pattern[0] {
				return false
			}
			s, pattern = s[1:], pattern[1:]
		}
	}
	return len(s) == 0
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "+switch-master", true},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"+switch-*", "+switch-master", true},
		{"+switch-*", "+sdown", false},
		{"+s?own", "+sdown", true},
		{"+s?own", "+sddown", false},
		{"?", "", false},
		{"**master", "+switch-master", true},
		{"*master*x", "+switch-master", false},
		{"*a*b", "aXbYb", true},
		{"*a*b", "aXbYa", false},
		{"a*", "a", true},
		{"*?", "", false},
		{"*?", "x", true},
		{"[+-]sdown", "-sdown", true},
		{"[^+]sdown", "+sdown", false},
		{"[^+]sdown", "-sdown", true},
		{"[a-c]", "b", true},
		{"[c-a]", "b", true},
		{"[a-c]", "d", false},
		{"[a-]", "-", true},
		{"[]", "a", false},
		{"[^]", "a", true},
		{"[", "", false},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`a\`, `a\`, true},
		{`*\`, `xx\`, true},
		{`[\]]`, "]", true},
		{`[\`, `\`, true},
		{"a[bc", "ab", true},
		{"*[bc", "xxb", true},
		{"abc", "ab", false},
		{"ab", "abc", false},
		{"*.*", "a.b.c", true},
		{"*+switch-master*", "+switch-master", true},
	}
	for _, tc := range tests {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
		if got := globRef(tc.pattern, tc.s); got != tc.want {
			t.Errorf("reference globRef(%q, %q) = %v, want %v: the table disagrees with the old matcher", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestGlobMatchWorstCase counts the steps of patterns that make a
// backtracking matcher exponential: globMatch stays within
// (len(pattern)+1) * (len(s)+1) pattern bytes examined.
func TestGlobMatchWorstCase(t *testing.T) {
	long := strings.Repeat("a", 4096)
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{strings.Repeat("*a", 60) + "b", long, false},
		{strings.Repeat("*a", 60) + "*", long, true},
		{strings.Repeat("*?", 60) + "b", long, false},
		{strings.Repeat("*[a-z]", 40) + "[^a]", long, false},
		{"*" + strings.Repeat("a", 100) + "b", long, false},
		{strings.Repeat("*a", maxSubscriptionName/2), strings.Repeat("a", maxSubscriptionName), true},
	}
	for _, tc := range tests {
		got, steps := globMatchSteps(tc.pattern, tc.s)
		if got != tc.want {
			t.Errorf("globMatch(%.20q..., %d bytes) = %v, want %v", tc.pattern, len(tc.s), got, tc.want)
		}
		bound := (len(tc.pattern) + 1) * (len(tc.s) + 1)
		if steps > bound {
			t.Errorf("globMatch(%.20q..., %d bytes) took %d steps, more than %d", tc.pattern, len(tc.s), steps, bound)
		}
	}
}

// FuzzGlob compares globMatch with the reference on short inputs (the
// reference is exponential): same answer, no panic, within the step bound.
func FuzzGlob(f *testing.F) {
	for _, seed := range [][2]string{
		{"*", "+switch-master"}, {"+s?own", "+sdown"}, {"[^+]sdown", "-sdown"}, {"[c-a]", "b"},
		{`[\]]`, "]"}, {"a[bc", "ab"}, {`a\`, `a\`}, {"*a*a*b", "aaaa"}, {"[]", ""}, {"[^]", "x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 24 || len(s) > 32 || strings.Count(pattern, "*") > 8 {
			return
		}
		got, steps := globMatchSteps(pattern, s)
		if want := globRef(pattern, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, the reference says %v", pattern, s, got, want)
		}
		if bound := (len(pattern) + 1) * (len(s) + 1); steps > bound {
			t.Fatalf("globMatch(%q, %q) took %d steps, more than %d", pattern, s, steps, bound)
		}
	})
}
