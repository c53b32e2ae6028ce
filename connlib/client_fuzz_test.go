package connlib

import (
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/routing"
)

// FuzzClientPackets feeds arbitrary bytes to the client's packet hook in
// both directions and to the control-packet handler: nothing may panic,
// and garbage never passes from the Tun.
func FuzzClientPackets(f *testing.F) {
	src := netip.MustParseAddrPort("100.64.0.2:5000")
	f.Add(clientUDPPacket(nil, src, netip.MustParseAddrPort("10.1.2.3:80"), []byte("x")))
	f.Add(clientUDPPacket(nil, src, netip.MustParseAddrPort("100.100.111.1:53"), clientTestQuery(f, "a.app.corp.", 1)))
	f.Add(clientUDPPacket(nil, netip.MustParseAddrPort("[fd00:2021:1111::2]:5000"), netip.MustParseAddrPort("[fd00:2021:1111:8000::5]:443"), []byte("y")))
	if ds, err := p2pcontrol.AppendDomainStatus(nil, p2pcontrol.DomainStatus{Resource: "7b0ac0a4-3b1e-4f5a-9c2d-1e2f3a4b5c6d", Domain: "a.app.corp", Status: p2pcontrol.StatusActive}); err == nil {
		f.Add(ds)
	}
	f.Add(p2pcontrol.AppendGoodbye(nil))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 0xff, 0})
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newHookTestClient(t, newClientFakeClock())
		c.log = zap.NewNop()
		c.table.Update(func(e *routing.Editor) { e.SetCIDR(routing.ResourceID{1}, netip.MustParsePrefix("10.0.0.0/8")) })
		h := (*clientHook)(c)
		if v := h.FromTun(b); v == Pass {
			t.Fatalf("unconnected resource passed: %x", b)
		}
		_ = h.ToTun(b)
		s := &clientState{
			c: c, log: zap.NewNop(),
			resources: map[string]portal.ClientResource{}, ridToID: map[routing.ResourceID]string{},
			gateways: map[string]*clientGateway{}, resGateway: map[string]string{},
			ready: map[routing.ResourceID]bool{}, active: map[clientTarget]bool{},
			retrier: p2pcontrol.NewRetrier[clientAssignKey](p2pcontrol.RetryConfig{Clock: c.clock}),
		}
		if clientIsControl(b) {
			s.onControl(append([]byte(nil), b...))
		}
	})
}
