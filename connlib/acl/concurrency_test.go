package acl

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
)

func TestCheckAllocs(t *testing.T) {
	tab := fixture(t)
	pkts := []struct {
		c ClientID
		p ippacket.Packet
	}{
		{cid(1), pkt(t, "tcp", aV4, ap("10.1.2.3"), 1, 443)},
		{cid(1), pkt(t, "tcp", aV4, ap("10.1.2.3"), 1, 9)},
		{cid(1), pkt(t, "udp", aV6, ap("2001:db8::1"), 1, 9)},
		{cid(2), pkt(t, "tcp", bV4, ap("8.8.8.8"), 1, 9)},
		{cid(2), pkt(t, "tcp", bV4, ap("10.0.0.1"), 1, 9)},
		{cid(3), pkt(t, "tcp", bV4, ap("10.0.0.1"), 1, 9)},
	}
	n := testing.AllocsPerRun(1000, func() {
		for _, x := range pkts {
			tab.Check(x.c, x.p, t0)
		}
		tab.CheckBytes(cid(1), pkts[0].p.Bytes(), t0)
	})
	if n != 0 {
		t.Fatalf("Check allocates %v times", n)
	}
}

func TestUpdateIsAtomicPerClient(t *testing.T) {
	tab := fixture(t)
	p := pkt(t, "tcp", aV4, ap("10.9.9.9"), 1, 22)
	tab.Update(func(tx *Tx) {
		if _, err := tx.Revoke(cid(1), rsc(1)); err != nil {
			t.Error(err)
		}
		// Not yet published inside the batch.
		if v := tab.Client(cid(1)).Check(p, t0); v != Allow {
			t.Errorf("change visible before Update returned: %v", v)
		}
		if err := tx.Authorize(cid(1), rsc(1), time.Time{}); err != nil {
			t.Error(err)
		}
	})
	if v := tab.Check(cid(1), p, t0); v != Allow {
		t.Fatalf("after batch: %v", v)
	}
}

// TestConcurrentUpdatesAndChecks runs checkers against a table being
// rewritten; run it with -race. Invariants a checker can verify at any
// moment: a stable resource always allows, a resource that flaps gives
// only Allow or DropNoResource, and a never-authorized one never allows.
func TestConcurrentUpdatesAndChecks(t *testing.T) {
	tab := New()
	stable, flap, never := rsc(1), rsc(2), rsc(3)
	tab.Update(func(tx *Tx) {
		_ = tx.UpsertResource(Resource{ID: stable, Kind: KindCIDR, Prefix: pfx("10.0.0.0/16")})
		_ = tx.UpsertResource(Resource{ID: flap, Kind: KindCIDR, Prefix: pfx("10.1.0.0/16")})
		_ = tx.UpsertResource(Resource{ID: never, Kind: KindCIDR, Prefix: pfx("10.2.0.0/16")})
		for i := 0; i < 50; i++ {
			id := ClientID{1, byte(i)}
			tx.UpsertClient(id, netip.AddrFrom4([4]byte{100, 64, 1, byte(i)}), netip.Addr{})
			_ = tx.Authorize(id, stable, time.Time{})
		}
	})
	const checkers = 4
	var stop atomic.Bool
	var wg sync.WaitGroup
	var checks atomic.Int64
	errs := make(chan string, checkers)
	for g := 0; g < checkers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			ps := make([][3]ippacket.Packet, 50)
			for i := range ps {
				src := netip.AddrFrom4([4]byte{100, 64, 1, byte(i)})
				ps[i] = [3]ippacket.Packet{
					pkt(t, "tcp", src, ap("10.0.1.1"), 1, 80),
					pkt(t, "tcp", src, ap("10.1.1.1"), 1, 80),
					pkt(t, "tcp", src, ap("10.2.1.1"), 1, 80),
				}
			}
			for !stop.Load() {
				i := r.IntN(50)
				id := ClientID{1, byte(i)}
				if v := tab.Check(id, ps[i][0], t0); v != Allow {
					errs <- "stable resource: " + v.String()
					return
				}
				if v := tab.Check(id, ps[i][1], t0); v != Allow && v != DropNoResource {
					errs <- "flapping resource: " + v.String()
					return
				}
				if v := tab.Check(id, ps[i][2], t0); v == Allow {
					errs <- "never-authorized resource allowed"
					return
				}
				checks.Add(1)
			}
		}(g)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 2000; i++ {
		id := ClientID{1, byte(r.IntN(50))}
		switch i % 4 {
		case 0:
			_ = tab.Authorize(id, flap, time.Time{})
		case 1:
			_, _ = tab.Revoke(id, flap)
		case 2:
			_ = tab.UpsertResource(Resource{ID: flap, Kind: KindCIDR, Prefix: pfx("10.1.0.0/16"), Filters: nil})
		case 3:
			tab.Update(func(tx *Tx) {
				tx.UpsertClient(ClientID{2, byte(i)}, netip.AddrFrom4([4]byte{100, 64, 2, byte(i)}), netip.Addr{})
				tx.RemoveClient(ClientID{2, byte(i - 4)})
			})
		}
	}
	// Let checkers observe the final state for a moment, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for checks.Load() < 1000 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if checks.Load() == 0 {
		t.Fatal("checkers made no progress")
	}
}

// benchTable builds nClients clients, each authorized for perClient of
// nRes CIDR resources (IPv4 /16-/28 inside 10.0.0.0/8 and IPv6 /48-/64
// inside 2001:db8::/32, some with port filters), and packets that hit a
// resource the client holds (3 in 4; filters may still drop them) or a
// random IPv4 address in 10.0.0.0/8 (mostly no resource).
func benchTable(tb testing.TB, nClients, nRes, perClient int) (*Table, []ClientID, []ippacket.Packet) {
	r := rand.New(rand.NewPCG(42, 42))
	type res struct {
		id ResourceID
		p  netip.Prefix
	}
	resources := make([]res, nRes)
	held := make([][]int32, nClients)
	tab := New()
	tab.Update(func(tx *Tx) {
		for i := range resources {
			var id ResourceID
			id[0], id[1], id[2] = 0xe, byte(i>>8), byte(i)
			var p netip.Prefix
			if i%4 == 3 {
				a := [16]byte{0x20, 0x01, 0x0d, 0xb8, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
				p = netip.PrefixFrom(netip.AddrFrom16(a), 48+r.IntN(17)).Masked()
			} else {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}), 16+r.IntN(13)).Masked()
			}
			var fs []Filter
			if i%2 == 0 {
				fs = []Filter{tcpF(443, 443), tcpF(8000, 8999), udpF(53, 53), icmpF()}
			}
			resources[i] = res{id, p}
			if err := tx.UpsertResource(Resource{ID: id, Kind: KindCIDR, Prefix: p, Filters: fs}); err != nil {
				tb.Fatal(err)
			}
		}
		for c := 0; c < nClients; c++ {
			var id ClientID
			id[0], id[1], id[2] = 0xc, byte(c>>8), byte(c)
			tx.UpsertClient(id, clientV4(c), clientV6(c))
			for k := 0; k < perClient; k++ {
				ri := r.IntN(nRes)
				held[c] = append(held[c], int32(ri))
				_ = tx.Authorize(id, resources[ri].id, t0.Add(time.Hour))
			}
		}
	})
	ids := make([]ClientID, 4096)
	pkts := make([]ippacket.Packet, len(ids))
	for i := range ids {
		c := r.IntN(nClients)
		ids[i][0], ids[i][1], ids[i][2] = 0xc, byte(c>>8), byte(c)
		rr := resources[held[c][r.IntN(len(held[c]))]]
		dst := rr.p.Addr()
		src := clientV4(c)
		if dst.Is6() {
			src = clientV6(c)
		}
		if i%4 == 3 {
			dst = netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			src = clientV4(c)
		}
		pkts[i] = pkt(tb, "tcp", src, dst, 40000, 443)
	}
	return tab, ids, pkts
}

func clientV4(c int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 + byte(c>>16), byte(c >> 8), byte(c)})
}

func clientV6(c int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0x20, 0x21, 0x11, 0x11, 14: byte(c >> 8), 15: byte(c)})
}

func BenchmarkCheck(b *testing.B) {
	tab, ids, pkts := benchTable(b, 10000, 1000, 100)
	var allowed int
	for i := range pkts {
		if tab.Check(ids[i], pkts[i], t0) == Allow {
			allowed++
		}
	}
	b.Logf("10000 clients x 100 resources: %d of %d sample packets allowed", allowed, len(pkts))
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			j := i & 4095
			tab.Check(ids[j], pkts[j], t0)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
	// One client's packets only: the same lookups with that client's
	// table in cache, to separate algorithmic cost from cache misses.
	hotIDs := make([]ClientID, 0, 64)
	hotPkts := make([]ippacket.Packet, 0, 64)
	for i := range pkts {
		if ids[i] == ids[0] {
			hotIDs, hotPkts = append(hotIDs, ids[i]), append(hotPkts, pkts[i])
		}
	}
	b.Run("one-client", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			j := i % len(hotPkts)
			tab.Check(hotIDs[j], hotPkts[j], t0)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				j := i & 4095
				tab.Check(ids[j], pkts[j], t0)
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
}

func TestBenchTableSanity(t *testing.T) {
	// The benchmark's table must produce both verdicts, or it measures
	// nothing interesting.
	tab, ids, pkts := benchTable(t, 200, 100, 20)
	var allow, deny int
	for i := range pkts {
		if tab.Check(ids[i], pkts[i], t0).Allowed() {
			allow++
		} else {
			deny++
		}
	}
	if allow == 0 || deny == 0 {
		t.Fatalf("allow %d deny %d", allow, deny)
	}
}
