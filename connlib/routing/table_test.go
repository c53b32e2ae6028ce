package routing

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

func rid(n byte) ResourceID { return ResourceID{15: n} }
func pfx(s string) netip.Prefix {
	return netip.MustParsePrefix(s)
}
func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLookup(t *testing.T) {
	tab := New()
	tab.Update(func(e *Editor) {
		e.SetCIDR(rid(1), pfx("10.0.0.0/8"))
		e.SetCIDR(rid(2), pfx("10.1.0.0/16"))
		e.SetCIDR(rid(3), pfx("10.1.2.3/32"))
		e.SetCIDR(rid(4), pfx("2001:db8::/32"))
		e.SetCIDR(rid(5), pfx("100.0.0.0/8")) // overlaps both reserved /11s
		e.SetCIDR(rid(7), pfx("172.16.0.0/12"))
		e.SetCIDR(rid(6), pfx("172.16.0.0/12")) // same prefix: lowest ID wins
		e.SetProxyIP(addr("100.96.0.1"), rid(8))
		e.SetProxyIP(addr("fd00:2021:1111:8000::1"), rid(8))
		e.SetDeviceIP(addr("100.64.1.38"), rid(10))
		e.SetDeviceIP(addr("fd00:2021:1111::125"), rid(10))
	})
	cases := []struct {
		dst  string
		id   ResourceID
		kind Kind
	}{
		{"10.9.9.9", rid(1), KindCIDR},
		{"10.1.9.9", rid(2), KindCIDR},
		{"10.1.2.3", rid(3), KindCIDR},
		{"10.1.2.4", rid(2), KindCIDR},
		{"2001:db8::1", rid(4), KindCIDR},
		{"172.20.0.1", rid(6), KindCIDR},
		{"100.127.255.255", ResourceID{}, KindReserved}, // proxy range beats the /8
		{"100.65.0.1", ResourceID{}, KindReserved},      // tunnel range (peers)
		{"100.64.1.38", rid(10), KindDevice},
		{"fd00:2021:1111::125", rid(10), KindDevice},
		{"100.100.111.1", ResourceID{}, KindReserved}, // DNS sentinel
		{"100.96.0.1", rid(8), KindDNS},
		{"100.96.0.2", ResourceID{}, KindReserved}, // unassigned proxy IP
		{"fd00:2021:1111:8000::1", rid(8), KindDNS},
		{"fd00:2021:1111::5", ResourceID{}, KindReserved},
		{"100.127.255.255", ResourceID{}, KindReserved},
		{"100.120.0.0", ResourceID{}, KindReserved},
		{"100.64.0.0", ResourceID{}, KindReserved},
		{"100.63.255.255", rid(5), KindCIDR},
		{"100.128.0.1", rid(5), KindCIDR}, // in the /8, outside both reserved /11s
		{"8.8.8.8", ResourceID{}, KindNone},
		{"2606:4700::1111", ResourceID{}, KindNone},
		{"::ffff:10.1.2.3", rid(3), KindCIDR},
	}
	check := func(tab *Table) {
		t.Helper()
		for _, c := range cases {
			id, kind := tab.LookupKind(addr(c.dst))
			if id != c.id || kind != c.kind {
				t.Errorf("LookupKind(%s) = %x %v, want %x %v", c.dst, id, kind, c.id, c.kind)
			}
			_, ok := tab.Lookup(addr(c.dst))
			if ok != (c.kind == KindCIDR || c.kind == KindDNS || c.kind == KindInternet || c.kind == KindDevice) {
				t.Errorf("Lookup(%s) ok = %v", c.dst, ok)
			}
		}
	}
	check(tab)

	// Internet resource: only where nothing else matches.
	inet := rid(99)
	tab.Update(func(e *Editor) { e.SetInternet(inet, true) })
	for i, c := range cases {
		if c.kind == KindNone {
			cases[i].id, cases[i].kind = inet, KindInternet
		}
	}
	check(tab)
	// ... and off again.
	tab.Update(func(e *Editor) { e.SetInternet(inet, false) })
	if _, k := tab.LookupKind(addr("8.8.8.8")); k != KindNone {
		t.Fatalf("internet resource still routes when disabled: %v", k)
	}
}

func TestRemoveResource(t *testing.T) {
	tab := New()
	tab.Update(func(e *Editor) {
		e.SetCIDR(rid(1), pfx("10.0.0.0/8"))
		e.SetProxyIP(addr("100.96.0.1"), rid(2))
		e.SetProxyIP(addr("100.96.0.2"), rid(2))
		e.SetProxyIP(addr("100.96.0.3"), rid(3))
		e.SetInternet(rid(4), true)
	})
	tab.Update(func(e *Editor) {
		e.RemoveResource(rid(2))
		e.RemoveResource(rid(4))
	})
	if _, ok := tab.Lookup(addr("100.96.0.1")); ok {
		t.Fatal("proxy IP survived removal")
	}
	if id, ok := tab.Lookup(addr("100.96.0.3")); !ok || id != rid(3) {
		t.Fatal("other resource's proxy IP removed")
	}
	if _, ok := tab.Lookup(addr("1.1.1.1")); ok {
		t.Fatal("internet resource survived removal")
	}
	tab.Update(func(e *Editor) { e.RemoveProxyIP(addr("100.96.0.3")); e.SetCIDR(rid(1), pfx("11.0.0.0/8")) })
	if _, ok := tab.Lookup(addr("10.0.0.1")); ok {
		t.Fatal("replaced CIDR still matches")
	}
	if _, ok := tab.Lookup(addr("11.0.0.1")); !ok {
		t.Fatal("replacement CIDR does not match")
	}
	tab.Update(func(e *Editor) { e.Clear() })
	if _, ok := tab.Lookup(addr("11.0.0.1")); ok {
		t.Fatal("Clear kept resources")
	}
}

func TestRoutesAndDiff(t *testing.T) {
	tab := New()
	base := ReservedRanges()
	if got := tab.Routes(); !slices.Equal(got, normalizeRoutes(slices.Clone(base))) {
		t.Fatalf("initial routes %v", got)
	}
	added, removed := tab.Update(func(e *Editor) {
		e.SetCIDR(rid(1), pfx("10.1.2.3/8"))
		e.SetCIDR(rid(2), pfx("10.0.0.0/8")) // duplicate route
		e.SetCIDR(rid(3), pfx("2001:db8::/32"))
		e.SetProxyIP(addr("100.96.0.1"), rid(4))   // covered: no route
		e.SetProxyIP(addr("198.51.100.7"), rid(4)) // outside the range: host route
	})
	want := []netip.Prefix{pfx("10.0.0.0/8"), pfx("198.51.100.7/32"), pfx("2001:db8::/32")}
	if !slices.Equal(added, want) || len(removed) != 0 {
		t.Fatalf("added %v removed %v", added, removed)
	}
	added, removed = tab.Update(func(e *Editor) {
		e.SetInternet(rid(9), true)
		e.RemoveResource(rid(3))
	})
	if !slices.Equal(added, []netip.Prefix{IPv4Default, IPv6Default}) || !slices.Equal(removed, []netip.Prefix{pfx("2001:db8::/32")}) {
		t.Fatalf("added %v removed %v", added, removed)
	}
	r := tab.Routes()
	if !slices.IsSortedFunc(r, comparePrefix) || !slices.Contains(r, IPv4Tunnel) || !slices.Contains(r, IPv6DNSSentinels) || !slices.Contains(r, IPv4Default) {
		t.Fatalf("routes %v", r)
	}
	r[0] = netip.Prefix{} // the caller's copy
	if !tab.Routes()[0].IsValid() {
		t.Fatal("Routes returned internal slice")
	}
	added, removed = tab.Update(func(e *Editor) {})
	if len(added)+len(removed) != 0 {
		t.Fatal("no-op update changed routes")
	}
}

func TestDiffRoutes(t *testing.T) {
	a := []netip.Prefix{pfx("10.0.0.0/8"), pfx("::/0"), pfx("10.0.0.0/8"), pfx("192.168.0.0/16")}
	b := []netip.Prefix{pfx("192.168.0.0/16"), pfx("10.0.0.0/16"), pfx("fd00::/8")}
	added, removed := DiffRoutes(a, b)
	if !slices.Equal(added, []netip.Prefix{pfx("10.0.0.0/16"), pfx("fd00::/8")}) {
		t.Fatalf("added %v", added)
	}
	if !slices.Equal(removed, []netip.Prefix{pfx("10.0.0.0/8"), pfx("::/0")}) {
		t.Fatalf("removed %v", removed)
	}
	if a[1] != pfx("::/0") {
		t.Fatal("input modified")
	}
	if ad, rm := DiffRoutes(nil, nil); ad != nil || rm != nil {
		t.Fatal("empty diff")
	}
}

func TestLookupAllocs(t *testing.T) {
	tab := New()
	tab.Update(func(e *Editor) {
		e.SetCIDR(rid(1), pfx("10.0.0.0/8"))
		e.SetInternet(rid(2), true)
	})
	a4, a6 := addr("10.1.1.1"), addr("2001:db8::1")
	n := testing.AllocsPerRun(1000, func() {
		if _, ok := tab.Lookup(a4); !ok {
			panic("miss")
		}
		if _, ok := tab.Lookup(a6); !ok {
			panic("miss")
		}
	})
	if n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}

func TestConcurrentUpdateAndLookup(t *testing.T) {
	tab := New()
	tab.Update(func(e *Editor) { e.SetCIDR(rid(1), pfx("10.0.0.0/8")) })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// 10/8 is always present; 11/8 comes and goes.
				if id, ok := tab.Lookup(addr("10.2.3.4")); !ok || id != rid(1) {
					panic("stable resource missing")
				}
				tab.Lookup(addr("11.2.3.4"))
			}
		}()
	}
	for i := 0; i < 500; i++ {
		tab.Update(func(e *Editor) {
			if i%2 == 0 {
				e.SetCIDR(rid(2), pfx("11.0.0.0/8"))
			} else {
				e.RemoveResource(rid(2))
			}
		})
	}
	close(stop)
	wg.Wait()
}

func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{10, 1000, 10000} {
		tab := New()
		tab.Update(func(e *Editor) {
			for i := 0; i < n; i++ {
				var id ResourceID
				id[0], id[1] = byte(i), byte(i>>8)
				e.SetCIDR(id, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), 0}), 16+r.IntN(17)))
				e.SetProxyIP(netip.AddrFrom4([4]byte{100, 96, byte(i >> 8), byte(i)}), id)
			}
			e.SetInternet(rid(1), true)
		})
		dsts := make([]netip.Addr, 1024)
		for i := range dsts {
			dsts[i] = netip.AddrFrom4([4]byte{byte(8 + r.IntN(3)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		}
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				tab.Lookup(dsts[i&1023])
			}
		})
	}
}
