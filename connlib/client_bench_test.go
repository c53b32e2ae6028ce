package connlib

import (
	"net/netip"
	"testing"

	"github.com/gozone/gozone/connlib/routing"
)

// BenchmarkClientHookFromTun is the per-packet cost of the client's
// routing decision for a connected CIDR resource (1000 CIDR resources in
// the table).
func BenchmarkClientHookFromTun(b *testing.B) {
	c := newHookTestClient(b, newClientFakeClock())
	h := (*clientHook)(c)
	rid := routing.ResourceID{1}
	c.table.Update(func(e *routing.Editor) {
		for i := 0; i < 1000; i++ {
			e.SetCIDR(routing.ResourceID{2, byte(i >> 8), byte(i)}, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>8), byte(i), 0}), 24))
		}
		e.SetCIDR(rid, netip.MustParsePrefix("10.0.0.0/8"))
	})
	c.view.Store(&clientView{ipv4: netip.MustParseAddr("100.64.0.2"), ready: map[routing.ResourceID]bool{rid: true}})
	pkt := clientUDPPacket(nil, netip.MustParseAddrPort("100.64.0.2:5000"), netip.MustParseAddrPort("10.1.2.3:80"), make([]byte, 1200))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if h.FromTun(pkt) != Pass {
			b.Fatal("must pass")
		}
	}
}
