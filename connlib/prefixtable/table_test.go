package prefixtable

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestFindMostSpecific(t *testing.T) {
	tab := New([]netip.Prefix{
		pfx("10.0.0.0/8"),       // 0
		pfx("10.1.0.0/16"),      // 1
		pfx("10.1.2.0/24"),      // 2
		pfx("0.0.0.0/0"),        // 3
		pfx("192.168.1.7/32"),   // 4
		pfx("255.255.255.0/24"), // 5
		pfx("2001:db8::/32"),    // 6
		pfx("2001:db8:1::/48"),  // 7
		pfx("::/0"),             // 8
		pfx("ffff::/16"),        // 9
		pfx("10.1.2.3/8"),       // 10: duplicate of 0 after masking
	})
	cases := []struct {
		a    string
		want int
	}{
		{"10.0.0.1", 0},
		{"10.1.0.1", 1},
		{"10.1.2.3", 2},
		{"10.1.3.0", 1},
		{"10.2.0.0", 0},
		{"10.255.255.255", 0},
		{"11.0.0.0", 3},
		{"9.255.255.255", 3},
		{"0.0.0.0", 3},
		{"192.168.1.7", 4},
		{"192.168.1.8", 3},
		{"192.168.1.6", 3},
		{"255.255.255.255", 5},
		{"255.255.254.255", 3},
		{"2001:db8::1", 6},
		{"2001:db8:1::1", 7},
		{"2001:db8:2::1", 6},
		{"2001:db9::", 8},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 9},
		{"::", 8},
		{"::ffff:10.1.2.3", 2}, // 4in6 is unmapped
	}
	for _, c := range cases {
		if got := tab.Find(addr(c.a)); got != c.want {
			t.Errorf("Find(%s) = %d, want %d", c.a, got, c.want)
		}
	}
	// Parent chains.
	chain := func(a string) []int {
		var out []int
		for i := tab.Find(addr(a)); i != None; i = tab.Parent(i) {
			out = append(out, i)
		}
		return out
	}
	got := chain("10.1.2.3")
	want := []int{2, 1, 0, 10, 3}
	if len(got) != len(want) {
		t.Fatalf("chain = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("chain = %v, want %v", got, want)
		}
	}
	if tab.Prefix(10) != pfx("10.0.0.0/8") {
		t.Errorf("Prefix(10) = %v, not masked", tab.Prefix(10))
	}
}

func TestEmptyAndGaps(t *testing.T) {
	var nilTab *Table
	if nilTab.Find(addr("1.2.3.4")) != None {
		t.Fatal("nil table matched")
	}
	tab := New(nil)
	if tab.Contains(addr("1.2.3.4")) || tab.Contains(addr("::1")) || tab.Contains(netip.Addr{}) {
		t.Fatal("empty table matched")
	}
	tab = New([]netip.Prefix{pfx("10.0.0.0/8"), {}, pfx("::ffff:10.0.0.0/104")})
	if tab.Contains(addr("::1")) || tab.Contains(addr("11.0.0.0")) || !tab.Contains(addr("10.3.3.3")) {
		t.Fatal("gap handling wrong")
	}
	if tab.Find(addr("10.0.0.1")) != 0 {
		t.Fatal("4in6 prefix must never match")
	}
}

// naive is the reference implementation: most specific, earliest added.
func naive(ps []netip.Prefix, a netip.Addr) int {
	best, bestBits := None, -1
	a = a.Unmap()
	for i, p := range ps {
		if p.Masked().Contains(a) && p.Bits() > bestBits {
			best, bestBits = i, p.Bits()
		}
	}
	return best
}

func TestRandomAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		n := r.IntN(40)
		ps := make([]netip.Prefix, n)
		for i := range ps {
			if r.IntN(2) == 0 {
				var b [4]byte
				b[0] = byte(r.IntN(4)) // dense space: lots of nesting
				b[1] = byte(r.IntN(4))
				b[2], b[3] = byte(r.Uint32()), byte(r.Uint32())
				ps[i] = netip.PrefixFrom(netip.AddrFrom4(b), r.IntN(33)).Masked()
			} else {
				var b [16]byte
				b[0] = byte(r.IntN(4))
				for j := 1; j < 16; j++ {
					b[j] = byte(r.Uint32())
				}
				if r.IntN(4) == 0 {
					b[0] = 0xff
				}
				ps[i] = netip.PrefixFrom(netip.AddrFrom16(b), r.IntN(129)).Masked()
			}
		}
		tab := New(ps)
		for q := 0; q < 300; q++ {
			var a netip.Addr
			if n > 0 && r.IntN(2) == 0 {
				// Probe near a prefix boundary.
				p := ps[r.IntN(n)]
				a = p.Addr()
				if r.IntN(2) == 0 {
					a = a.Prev()
				}
				if !a.IsValid() {
					a = p.Addr()
				}
			} else if r.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{byte(r.IntN(4)), byte(r.IntN(4)), byte(r.Uint32()), byte(r.Uint32())})
			} else {
				var b [16]byte
				b[0] = byte(r.IntN(4))
				for j := 1; j < 16; j++ {
					b[j] = byte(r.Uint32())
				}
				a = netip.AddrFrom16(b)
			}
			got, want := tab.Find(a), naive(ps, a)
			if got == None && want == None {
				continue
			}
			// Ties between identical prefixes: the earliest added wins.
			if got != want {
				t.Fatalf("round %d: Find(%v) = %d, want %d; prefixes %v", round, a, got, want, ps)
			}
			// Every parent contains a and is no more specific.
			for i := tab.Parent(got); i != None; i = tab.Parent(i) {
				if !tab.Prefix(i).Contains(a.Unmap()) {
					t.Fatalf("parent %v of %v does not contain %v", tab.Prefix(i), tab.Prefix(got), a)
				}
			}
		}
	}
}

func TestFindAllocs(t *testing.T) {
	tab := New([]netip.Prefix{pfx("10.0.0.0/8"), pfx("2001:db8::/32")})
	a4, a6 := addr("10.1.1.1"), addr("2001:db8::1")
	n := testing.AllocsPerRun(1000, func() {
		if tab.Find(a4) != 0 || tab.Find(a6) != 1 {
			panic("bad")
		}
	})
	if n != 0 {
		t.Fatalf("Find allocates %v times", n)
	}
}

func BenchmarkFind(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	ps := make([]netip.Prefix, 1000)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), 0}), 16+r.IntN(17)).Masked()
	}
	tab := New(ps)
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tab.Find(addrs[i&1023])
	}
}

func BenchmarkNew(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{100, 1000} {
		ps := make([]netip.Prefix, n)
		for i := range ps {
			if i%4 == 3 {
				ps[i] = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, byte(r.Uint32()), byte(r.Uint32())}), 32+r.IntN(97)).Masked()
			} else {
				ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}), 8+r.IntN(25)).Masked()
			}
		}
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				New(ps)
			}
		})
	}
}

func BenchmarkFindV6(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	ps := make([]netip.Prefix, 1000)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, byte(r.Uint32()), byte(r.Uint32())}), 32+r.IntN(97)).Masked()
	}
	tab := New(ps)
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, byte(r.Uint32()), byte(r.Uint32()), 15: byte(r.Uint32())})
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tab.Find(addrs[i&1023])
	}
}
