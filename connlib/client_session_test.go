package connlib

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/snownet"
)

// TestClientThinSlice is the end-to-end slice in one process: the
// development portal on loopback, a client session on an in-memory Tun and
// a gateway. A UDP packet the "application" writes into the client's Tun
// for a CIDR resource triggers request_authorization, is buffered while
// the connection is set up, comes out of the gateway's Tun, and the reply
// comes back to the application.
func TestClientThinSlice(t *testing.T) {
	p := startClientTestPortal(t, "")
	gw := startScriptedGateway(t, p)
	tc := startTestClient(t, p, ctClientToken, nil)
	tc.waitReady(t)

	st := tc.c.Status()
	if !st.IPv4.IsValid() || !st.IPv6.IsValid() || len(st.Resources) != 4 {
		t.Fatalf("status after init: %+v", st)
	}
	src := netip.AddrPortFrom(st.IPv4, 40000)
	dst := netip.MustParseAddrPort("10.99.0.5:7")

	// Three packets before any connection exists: all are buffered and
	// delivered in order once it is up.
	for i := byte(0); i < 3; i++ {
		memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte{'p', 'i', 'n', 'g', i}))
	}
	for i := byte(0); i < 3; i++ {
		got := echoUDP(t, gw.lan, dst)
		if want := []byte{'p', 'i', 'n', 'g', i}; !bytes.Equal(got.Payload()[8:], want) || got.Src() != src.Addr() {
			t.Fatalf("gateway got %q from %v, want %q from %v", got.Payload()[8:], got.Src(), want, src.Addr())
		}
	}
	for i := byte(0); i < 3; i++ {
		r := memRecv(t, tc.app, clientWait, udpTo(src))
		if want := []byte{'p', 'i', 'n', 'g', i}; !bytes.Equal(r.Payload()[8:], want) || r.Src() != dst.Addr() || r.SrcPort() != dst.Port() {
			t.Fatalf("reply %q from %v:%d", r.Payload()[8:], r.Src(), r.SrcPort())
		}
	}

	// Steady state: a second resource on the same gateway (the IP
	// resource inside the CIDR: most specific wins) and more packets.
	dst2 := netip.MustParseAddrPort("10.99.0.77:9")
	memSend(t, tc.app, clientUDPPacket(nil, src, dst2, []byte("second")))
	if got := echoUDP(t, gw.lan, dst2); string(got.Payload()[8:]) != "second" {
		t.Fatalf("second resource: %q", got.Payload()[8:])
	}
	memRecv(t, tc.app, clientWait, udpTo(src))

	st = tc.c.Status()
	if len(st.Gateways) != 1 || !st.Gateways[0].Connected || st.Gateways[0].Path != snownet.PathDirect ||
		st.Gateways[0].TxBytes == 0 || st.Gateways[0].RxBytes == 0 || len(st.Gateways[0].Resources) != 2 {
		t.Fatalf("gateway status: %+v", st.Gateways)
	}
	connected := 0
	for _, r := range st.Resources {
		if r.Connected {
			connected++
			if r.GatewayID != st.Gateways[0].ID {
				t.Fatalf("resource %s on %q", r.Name, r.GatewayID)
			}
		}
	}
	if connected != 2 {
		t.Fatalf("connected resources: %+v", st.Resources)
	}
	if n := gw.authorizations(); n != 2 {
		t.Fatalf("gateway saw %d authorizations, want 2 (one per resource)", n)
	}
}

// TestClientAuthorizationFailed: a resource whose site has no gateway
// online gets authorization_creation_failed{offline}; the buffered packet
// is answered with an ICMP host-unreachable on the Tun.
func TestClientAuthorizationFailed(t *testing.T) {
	p := startClientTestPortal(t, "")
	tc := startTestClient(t, p, ctClientToken, nil)
	tc.waitReady(t)
	src := netip.AddrPortFrom(tc.c.Status().IPv4, 40001)
	dst := netip.MustParseAddrPort("10.98.0.9:53")
	memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte("hello")))
	icmp := memRecv(t, tc.app, clientWait, func(p ippacket.Packet) bool { return p.IsICMPError() })
	if icmp.Dst() != src.Addr() || icmp.ICMPType() != 3 || icmp.ICMPCode() != 1 {
		t.Fatalf("ICMP error to %v type %d code %d, want host unreachable to %v", icmp.Dst(), icmp.ICMPType(), icmp.ICMPCode(), src.Addr())
	}
	q, err := icmp.ICMPErrorQuote()
	if err != nil || q.Dst() != dst.Addr() {
		t.Fatalf("quoted packet: %v %v", q.Dst(), err)
	}
	for _, r := range tc.c.Status().Resources {
		if r.Connected {
			t.Fatalf("resource %s connected without a gateway", r.Name)
		}
	}
}

// TestClientNoRouteDropped: packets for addresses that are no resource are
// dropped without asking the portal.
func TestClientNoRouteDropped(t *testing.T) {
	p := startClientTestPortal(t, "")
	tc := startTestClient(t, p, ctClientToken, nil)
	tc.waitReady(t)
	src := netip.AddrPortFrom(tc.c.Status().IPv4, 40002)
	memSend(t, tc.app, clientUDPPacket(nil, src, netip.MustParseAddrPort("192.0.2.1:9"), []byte("x")))
	if _, ok := memTryRecv(tc.app, 2*time.Second, func(ippacket.Packet) bool { return true }); ok {
		t.Fatal("a packet for no resource produced an answer")
	}
	if n := tc.c.pending.Len(clientTarget{}); n != 0 {
		t.Fatalf("buffered %d", n)
	}
}
