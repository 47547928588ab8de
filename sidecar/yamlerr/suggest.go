package yamlerr

import (
	"strings"
)

// Suggest returns the candidate closest to s, or "" if none is close enough.
// Comparison ignores case and treats '-', ' ' and '.' like '_'. aliases maps
// common alternative spellings (normalised) to a candidate.
func Suggest(s string, candidates []string, aliases ...map[string]string) string {
	if len(s) > 64 {
		return ""
	}
	norm := func(x string) string {
		return strings.Map(func(r rune) rune {
			switch r {
			case '-', ' ', '.':
				return '_'
			}
			return r
		}, strings.ToLower(x))
	}
	ns := norm(s)
	for _, m := range aliases {
		if c, ok := m[ns]; ok {
			return c
		}
	}
	best, bestD := "", -1
	for _, c := range candidates {
		nc := norm(c)
		if nc == ns {
			return c
		}
		d := levenshtein(ns, nc)
		// A prefix or a word of the candidate also counts as close.
		if len(ns) >= 3 && (strings.HasPrefix(nc, ns) || strings.HasPrefix(ns, nc)) {
			d = min(d, 2)
		}
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(2, len(ns)/3)
	if bestD >= 0 && bestD <= limit {
		return best
	}
	return ""
}

// levenshtein returns the edit distance between a and b (bytes).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
