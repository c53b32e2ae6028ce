package dns

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPattern is wrapped by every error ParsePattern returns.
var ErrInvalidPattern = errors.New("dns: invalid resource address pattern")

// Limits of DNS names in presentation form without the trailing dot.
const (
	maxNameLen   = 253
	maxLabelLen  = 63
	maxNameLabel = 127
)

type labelKind uint8

const (
	labelLiteral labelKind = iota // matches exactly that label
	labelGlob                     // contains * or ?; matches one label
	labelAny                      // "**": zero or more whole labels
)

type patLabel struct {
	kind labelKind
	text string // lower case
}

// Pattern is the address of a DNS resource, e.g. "app.example.com",
// "*.example.com", "**.example.com" or "app-??.example.com".
//
// Matching is label by label, ASCII case-insensitive, and ignores one
// trailing dot on either side. Within a label, '*' matches any run of
// characters (possibly empty) and '?' exactly one character; neither ever
// matches a dot, so they never cross a label boundary. A label that is
// exactly "**" matches zero or more whole labels. As in Firezone, a pattern
// that starts with "*." also matches the bare parent: "*.example.com"
// matches "example.com" and "a.example.com" but not "a.b.example.com";
// "**.example.com" matches "example.com" and every name below it at any
// depth.
//
// The zero Pattern matches nothing. Patterns are immutable and safe for
// concurrent use.
type Pattern struct {
	raw    string // normalised: lower case, no trailing dot
	labels []patLabel
}

// ParsePattern compiles a resource address. It rejects the empty pattern,
// empty labels ("a..b", ".a"), labels longer than 63 bytes, names longer than
// 253 bytes, "**" mixed with other characters inside a label (as Firezone's
// glob library does), and characters that have no place in a DNS name
// pattern: control characters, space, '/', '\\', '[' and ']' (character
// classes are not supported).
func ParsePattern(s string) (Pattern, error) {
	raw := strings.ToLower(strings.TrimSuffix(s, "."))
	if raw == "" {
		return Pattern{}, fmt.Errorf("%w: empty", ErrInvalidPattern)
	}
	if len(raw) > maxNameLen {
		return Pattern{}, fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidPattern, s, maxNameLen)
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c <= ' ' || c == 0x7f || c == '/' || c == '\\' || c == '[' || c == ']' {
			return Pattern{}, fmt.Errorf("%w: %q contains %q", ErrInvalidPattern, s, c)
		}
	}
	parts := strings.Split(raw, ".")
	if len(parts) > maxNameLabel {
		return Pattern{}, fmt.Errorf("%w: %q has too many labels", ErrInvalidPattern, s)
	}
	labels := make([]patLabel, len(parts))
	for i, p := range parts {
		switch {
		case p == "":
			return Pattern{}, fmt.Errorf("%w: %q has an empty label", ErrInvalidPattern, s)
		case p == "**":
			labels[i] = patLabel{kind: labelAny, text: p}
		case strings.Contains(p, "**"):
			return Pattern{}, fmt.Errorf("%w: %q: \"**\" must be a label of its own", ErrInvalidPattern, s)
		case len(p) > maxLabelLen:
			return Pattern{}, fmt.Errorf("%w: %q has a label longer than %d bytes", ErrInvalidPattern, s, maxLabelLen)
		case strings.ContainsAny(p, "*?"):
			labels[i] = patLabel{kind: labelGlob, text: p}
		default:
			labels[i] = patLabel{kind: labelLiteral, text: p}
		}
	}
	return Pattern{raw: raw, labels: labels}, nil
}

// MustParsePattern is ParsePattern for constants in tests and examples; it
// panics on error.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the normalised pattern (lower case, no trailing dot).
func (p Pattern) String() string { return p.raw }

// IsZero reports whether p is the zero Pattern.
func (p Pattern) IsZero() bool { return len(p.labels) == 0 }

// Match reports whether name (presentation form, e.g. "A.Example.com.")
// matches the pattern. It does not allocate.
func (p Pattern) Match(name string) bool { return matchName(p, name) }

// matchBytes is Match for a name held in a byte slice (the resolver's scratch
// buffer), so the hot path needs no string conversion.
func (p Pattern) matchBytes(name []byte) bool { return matchName(p, name) }

type text interface{ ~string | ~[]byte }

// nameLabels locates the labels of a name once, so that matching it against
// many patterns does not split it again for each one.
type nameLabels struct {
	// starts[i] is where label i begins; label i ends at starts[i+1]-1.
	starts [maxNameLabel + 2]int
	count  int
}

// split fills l from name (one trailing dot allowed). It returns false for
// names no pattern can match: empty, too long, too many labels, or with an
// empty label.
func split[S text](l *nameLabels, name S) bool {
	n := len(name)
	if n > 0 && name[n-1] == '.' {
		n--
	}
	if n == 0 || n > maxNameLen {
		return false
	}
	count := 0
	l.starts[0] = 0
	for i := 0; i < n; i++ {
		if name[i] == '.' {
			if i == l.starts[count] { // empty label
				return false
			}
			count++
			if count >= maxNameLabel {
				return false
			}
			l.starts[count] = i + 1
		}
	}
	if l.starts[count] == n { // trailing empty label ("a..")
		return false
	}
	count++
	l.starts[count] = n + 1
	l.count = count
	return true
}

// matchName matches one name against one pattern.
func matchName[S text](p Pattern, name S) bool {
	var l nameLabels
	return split(&l, name) && matchSplit(p, name, &l)
}

// matchSplit runs the label-level matcher on a split name. The pattern's
// trailing literal labels are compared first: they must equal the name's
// last labels, which rejects almost every non-matching pattern with one
// label comparison. The rest is a dynamic programme over (pattern label,
// name label), so several "**" cost O(P×N) instead of exponential
// backtracking.
func matchSplit[S text](p Pattern, name S, l *nameLabels) bool {
	if len(p.labels) == 0 {
		return false
	}
	j := l.count - 1
	for i := len(p.labels) - 1; i >= 0 && p.labels[i].kind == labelLiteral; i-- {
		if j < 0 || !matchLabel(p.labels[i], name, l.starts[j], l.starts[j+1]-1) {
			return false
		}
		j--
	}
	if matchFrom(p.labels, name, &l.starts, l.count) {
		return true
	}
	// "*.example.com" also matches "example.com" (Firezone's apex rule).
	if len(p.labels) > 1 && p.labels[0].kind == labelGlob && p.labels[0].text == "*" {
		return matchFrom(p.labels[1:], name, &l.starts, l.count)
	}
	return false
}

func matchFrom[S text](labels []patLabel, name S, starts *[maxNameLabel + 2]int, count int) bool {
	// cur[j]: the pattern labels processed so far match name labels [0, j).
	var cur, next [maxNameLabel + 1]bool
	cur[0] = true
	for _, pl := range labels {
		if pl.kind == labelAny {
			acc := false
			for j := 0; j <= count; j++ {
				acc = acc || cur[j]
				next[j] = acc
			}
		} else {
			next[0] = false
			some := false
			for j := 1; j <= count; j++ {
				next[j] = cur[j-1] && matchLabel(pl, name, starts[j-1], starts[j]-1)
				some = some || next[j]
			}
			if !some {
				return false
			}
		}
		cur = next
	}
	return cur[count]
}

// matchLabel matches one pattern label against name[lo:hi] (ASCII
// case-insensitive; the pattern is already lower case).
func matchLabel[S text](pl patLabel, name S, lo, hi int) bool {
	pat := pl.text
	if pl.kind == labelLiteral {
		if hi-lo != len(pat) {
			return false
		}
		for i := 0; i < len(pat); i++ {
			if lower(name[lo+i]) != pat[i] {
				return false
			}
		}
		return true
	}
	// Iterative wildcard matching with single-star backtracking: linear in
	// practice, O(len(pat)×len(label)) at worst, both ≤ 63.
	pi, ni := 0, lo
	starP, starN := -1, 0
	for ni < hi {
		switch {
		case pi < len(pat) && pat[pi] == '*':
			starP, starN = pi, ni
			pi++
		case pi < len(pat) && (pat[pi] == '?' || pat[pi] == lower(name[ni])):
			pi++
			ni++
		case starP >= 0:
			pi = starP + 1
			starN++
			ni = starN
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// ComparePatterns orders patterns by specificity: it returns a negative
// number when a is more specific than b, positive when b is, and 0 when they
// are the same pattern. When several DNS resources match a name, the most
// specific pattern wins (ties between equal patterns go to the lowest
// resource ID).
//
// The rule is Firezone's (tunnel-proto dns pattern ordering): both patterns
// are read from the right, character by character, until they differ. At
// the first difference:
//   - '?' is more specific than '*';
//   - a literal character, a '.' or the end of the pattern is more specific
//     than a wildcard ('*' or '?');
//   - between two literal characters the pattern with the greater character
//     sorts first (a deterministic tie-break without meaning);
//   - if one pattern ends first (it is a suffix of the other), the shorter is
//     more specific.
//
// So "app.example.com" < "?.example.com" < "*.example.com" <
// "**.example.com", and any pattern whose rightmost wildcard is further left
// beats one whose wildcard is further right ("*ample.com" < "*.com").
func ComparePatterns(a, b Pattern) int {
	x, y := a.raw, b.raw
	i, j := len(x)-1, len(y)-1
	for {
		switch {
		case i < 0 && j < 0:
			return 0
		case i < 0: // a is a suffix of b: shorter (or wildcard-free) first
			return -1
		case j < 0:
			return 1
		}
		cx, cy := x[i], y[j]
		if cx == cy {
			i--
			j--
			continue
		}
		switch {
		case cx == '*' && cy == '?':
			return 1
		case cx == '?' && cy == '*':
			return -1
		case isWild(cx):
			return 1
		case isWild(cy):
			return -1
		case cx > cy:
			return -1
		default:
			return 1
		}
	}
}

func isWild(c byte) bool { return c == '*' || c == '?' }
