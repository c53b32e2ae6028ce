package dns

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		// Cases from Firezone's pattern tests.
		{"**.example.com", "example.com", true},
		{"app.**.example.com", "app.bar.foo.example.com", true},
		{"**.example.com", "foo.example.com", true},
		{"**.example.com", "foo.bar.example.com", true},
		{"*.example.com", "foo.example.com", true},
		{"*.example.com", "example.com", true}, // apex rule
		{"foo.*.example.com", "foo.bar.example.com", true},
		{"app.*.*.example.com", "app.foo.bar.example.com", true},
		{"app.f??.example.com", "app.foo.example.com", true},
		{"app.example.com", "app.example.com", true},
		{"*?*.example.com", "app.example.com", true},
		{"app.**.web.**.example.com", "app.web.example.com", true},
		{"app.*.example.com", "app.foo.bar.example.com", false},
		{"app.*com", "app.foo.com", false},
		{"app?com", "app.com", false},

		// Single star: exactly one label (or the apex), never deeper.
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "xexample.com", false},
		{"*.example.com", "example.org", false},
		{"*.example.com", "com", false},
		// Double star at any depth, including zero.
		{"**.example.com", "a.b.c.d.e.example.com", true},
		{"**.example.com", "example.org", false},
		{"**.example.com", "notexample.com", false},
		{"app.**.example.com", "app.example.com", true},
		{"app.**.example.com", "app.x.example.org", false},
		{"a.**", "a", true},
		{"a.**", "a.b.c", true},
		{"**", "anything.at.all", true},
		// Question mark: exactly one character, not a dot.
		{"app-?.example.com", "app-1.example.com", true},
		{"app-?.example.com", "app-.example.com", false},
		{"app-?.example.com", "app-12.example.com", false},
		{"??.example.com", "ab.example.com", true},
		// Star inside a label.
		{"*ample.com", "example.com", true},
		{"*ample.com", "ample.com", true},
		{"*ample.com", "a.example.com", false},
		{"app*.example.com", "app.example.com", true},
		{"app*.example.com", "application.example.com", true},
		{"a*b*c.example.com", "aXXbYYc.example.com", true},
		{"a*b*c.example.com", "aXXbYY.example.com", false},
		// Case and trailing dots on either side.
		{"App.Example.COM", "app.example.com", true},
		{"app.example.com", "APP.EXAMPLE.COM.", true},
		{"app.example.com.", "app.example.com", true},
		{"*.Example.com", "FOO.example.COM", true},
		// Literal names must match exactly.
		{"example.com", "www.example.com", false},
		{"www.example.com", "example.com", false},
		{"example.com", "example.co", false},
		// Malformed names never match.
		{"**", "", false},
		{"**", ".", false},
		{"a.**", "a..b", false},
		{"**.com", ".com", false},
		{"example.com", "example.com..", false},
	}
	for _, tc := range tests {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		if got := p.Match(tc.name); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
		if got := p.matchBytes([]byte(tc.name)); got != tc.want {
			t.Errorf("%q.matchBytes(%q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, s := range []string{
		"", ".", "a..b", ".example.com", "a**.example.com", "**b.com", "a.***.com",
		"exa mple.com", "a/b.com", "[ab].com", "a\\.com", "a\x00.com",
		strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 127) + "com",
		strings.Repeat("abcdefghi.", 26) + "com",
	} {
		if _, err := ParsePattern(s); !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("ParsePattern(%q) error = %v, want ErrInvalidPattern", s, err)
		}
	}
	if p := MustParsePattern("A.Example.COM."); p.String() != "a.example.com" {
		t.Errorf("normalised = %q", p.String())
	}
	var zero Pattern
	if zero.Match("example.com") || !zero.IsZero() {
		t.Error("zero Pattern must match nothing")
	}
}

func TestComparePatternsOrder(t *testing.T) {
	// The order of Firezone's pattern_ordering test.
	want := []string{
		"example.com",
		"bar.example.com",
		"*.bar.example.com",
		"foo.example.com",
		"?.example.com",
		"*.example.com",
		"**.example.com",
		"*ample.com",
		"*.com",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		ps := make([]Pattern, len(want))
		for i, s := range want {
			ps[i] = MustParsePattern(s)
		}
		r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		slices.SortFunc(ps, ComparePatterns)
		for i := range ps {
			if ps[i].String() != want[i] {
				t.Fatalf("position %d: got %q, want %q (all: %v)", i, ps[i], want[i], ps)
			}
		}
	}
	for _, s := range want {
		if c := ComparePatterns(MustParsePattern(s), MustParsePattern(strings.ToUpper(s))); c != 0 {
			t.Errorf("ComparePatterns(%q, upper) = %d, want 0", s, c)
		}
	}
}

func TestComparePatternsAntisymmetric(t *testing.T) {
	ps := []string{"a.com", "*.com", "**.com", "?.com", "b.a.com", "*.a.com", "a*.com", "*a.com", "x.**.com", "com"}
	for _, a := range ps {
		for _, b := range ps {
			x, y := ComparePatterns(MustParsePattern(a), MustParsePattern(b)), ComparePatterns(MustParsePattern(b), MustParsePattern(a))
			if sign(x) != -sign(y) || (a == b) != (x == 0) {
				t.Errorf("Compare(%q,%q)=%d, Compare(%q,%q)=%d", a, b, x, b, a, y)
			}
		}
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func TestMatcherMostSpecificWins(t *testing.T) {
	resources := []Resource{
		{ID: "wild2", Address: "**.example.com"},
		{ID: "wild1", Address: "*.example.com"},
		{ID: "q", Address: "?.example.com"},
		{ID: "exact", Address: "foo.example.com", IPStack: IPStackIPv4Only},
		{ID: "deep", Address: "*.bar.example.com"},
		{ID: "b-dup", Address: "dup.example.com"},
		{ID: "a-dup", Address: "dup.example.com"},
	}
	m, err := NewMatcher(resources)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, want string }{
		{"foo.example.com", "exact"},
		{"FOO.example.com.", "exact"},
		{"x.example.com", "q"},
		{"xy.example.com", "wild1"},
		{"example.com", "wild1"}, // apex: "*." beats "**."
		{"a.b.example.com", "wild2"},
		{"z.bar.example.com", "deep"},
		{"bar.example.com", "deep"}, // apex of *.bar beats *.example.com
		{"dup.example.com", "a-dup"},
		{"example.org", ""},
	}
	for _, tc := range tests {
		r, ok := m.Match(tc.name)
		if got := r.ID; !ok && got != "" || ok != (tc.want != "") || got != tc.want {
			t.Errorf("Match(%q) = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	if r, _ := m.Match("foo.example.com"); r.IPStack != IPStackIPv4Only || r.Address != "foo.example.com" {
		t.Errorf("resource fields not carried: %+v", r)
	}
}

func TestMatcherReportsInvalid(t *testing.T) {
	m, err := NewMatcher([]Resource{{ID: "ok", Address: "a.com"}, {ID: "bad", Address: "a..com"}, {ID: "", Address: "b.com"}})
	if !errors.Is(err, ErrInvalidPattern) {
		t.Fatalf("err = %v, want ErrInvalidPattern", err)
	}
	if r, ok := m.Match("a.com"); !ok || r.ID != "ok" {
		t.Errorf("valid resource lost: %+v %v", r, ok)
	}
	if _, ok := m.Match("b.com"); ok {
		t.Error("resource with empty ID accepted")
	}
}

func TestMatchAllocs(t *testing.T) {
	p := MustParsePattern("app.**.web.*.example.com")
	name := "App.a.b.c.web.x.example.com."
	if !p.Match(name) {
		t.Fatal("no match")
	}
	if n := testing.AllocsPerRun(100, func() { p.Match(name) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

func TestParseIPStack(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want IPStack
		ok   bool
	}{{"", IPStackDual, true}, {"dual", IPStackDual, true}, {"ipv4_only", IPStackIPv4Only, true}, {"ipv6_only", IPStackIPv6Only, true}, {"ipv5", IPStackDual, false}} {
		got, ok := ParseIPStack(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseIPStack(%q) = %v, %v", tc.in, got, ok)
		}
		if tc.ok && tc.in != "" && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}
