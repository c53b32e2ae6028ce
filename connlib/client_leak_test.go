package connlib

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"
)

// TestClientNoGoroutineLeak: a session that connected, moved traffic, did
// DNS over TCP setup and stopped leaves no goroutine behind (portal,
// gateway and client all stopped by the subtest's cleanups).
func TestClientNoGoroutineLeak(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Run("session", func(t *testing.T) {
		p := startClientTestPortal(t, "")
		gw := startScriptedGateway(t, p)
		tc := startTestClient(t, p, ctClientToken, func(cfg *ClientConfig) {
			cfg.SystemResolvers = []netip.Addr{netip.MustParseAddr("127.0.77.5")}
		})
		tc.waitReady(t)
		src := netip.AddrPortFrom(tc.c.Status().IPv4, 45000)
		dst := netip.MustParseAddrPort("10.99.0.9:7")
		memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte("x")))
		echoUDP(t, gw.lan, dst)
		memRecv(t, tc.app, clientWait, udpTo(src))
		tc.c.Reset("leak test")
	})
	goleak.VerifyNone(t, before)
}
