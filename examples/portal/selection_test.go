package devportal

import (
	"net/netip"
	"testing"
)

func gws(ids ...string) []*gatewayConn {
	out := make([]*gatewayConn, len(ids))
	for i, id := range ids {
		out[i] = &gatewayConn{id: id}
	}
	return out
}

func TestPickGateway(t *testing.T) {
	first := func(int) int { return 0 }
	if pickGateway(nil, nil, nil, first) != nil {
		t.Fatal("picked from nothing")
	}
	c := gws("a", "b", "c")
	if g := pickGateway(c, []string{"x", "b"}, map[string]int{"b": 100}, first); g.id != "b" {
		t.Fatalf("connected gateway not preferred: %s", g.id)
	}
	if g := pickGateway(c, []string{"offline"}, map[string]int{"a": 2, "b": 1, "c": 3}, first); g.id != "b" {
		t.Fatalf("least loaded not chosen: %s", g.id)
	}
	// Ties are broken by intn over the tied ones only.
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		g := pickGateway(c, nil, map[string]int{"a": 1}, func(n int) int {
			if n != 2 {
				t.Fatalf("tie set size %d", n)
			}
			return i % n
		})
		seen[g.id]++
	}
	if seen["a"] != 0 || seen["b"] == 0 || seen["c"] == 0 {
		t.Fatalf("spread %v", seen)
	}
	// Simulated load: distinct clients spread evenly.
	load := map[string]int{}
	for i := 0; i < 99; i++ {
		g := pickGateway(c, nil, load, func(int) int { return 0 })
		load[g.id]++
	}
	if load["a"] != 33 || load["b"] != 33 || load["c"] != 33 {
		t.Fatalf("uneven %v", load)
	}
}

func TestIPAM(t *testing.T) {
	var p ipam
	a4, a6, _ := p.assign("a")
	b4, b6, _ := p.assign("b")
	a4again, _, _ := p.assign("a")
	if a4 != netip.MustParseAddr("100.64.0.1") || b4 != netip.MustParseAddr("100.64.0.2") || a4again != a4 {
		t.Fatalf("%v %v %v", a4, b4, a4again)
	}
	if a6 != netip.MustParseAddr("fd00:2021:1111::1") || b6 != netip.MustParseAddr("fd00:2021:1111::2") {
		t.Fatalf("%v %v", a6, b6)
	}
	if got := nth(ipv4Pool, 256+5); got != netip.MustParseAddr("100.64.1.5") {
		t.Fatal(got)
	}
	if got := nth(ipv4Pool, poolSize); !ipv4Pool.Contains(got) || !ipv6Pool.Contains(nth(ipv6Pool, poolSize)) {
		t.Fatal("pool end outside the pool")
	}
}
