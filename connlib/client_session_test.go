package connlib

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/routing"
	"github.com/gozone/gozone/connlib/snownet"
	"github.com/gozone/gozone/tun"
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
		if want := map[bool]string{true: "offline", false: ""}[r.Name == "nowhere"]; r.Failure != want {
			t.Fatalf("resource %s failure %q, want %q", r.Name, r.Failure, want)
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

// TestClientTokenRejected: a token the portal refuses ends Run with
// ErrClientTokenRejected.
func TestClientTokenRejected(t *testing.T) {
	p := startClientTestPortal(t, "")
	tc := startTestClient(t, p, "client-token-nobody-00000", nil)
	select {
	case err := <-tc.done:
		if !errors.Is(err, ErrClientTokenRejected) {
			t.Fatalf("Run: %v, want ErrClientTokenRejected", err)
		}
		tc.done <- err // for the cleanup
	case <-time.After(clientWait):
		t.Fatal("Run did not fail")
	}
}

// TestClientMalformedPortalMessages: garbage from the portal is logged and
// ignored; the session state stays as it was.
func TestClientMalformedPortalMessages(t *testing.T) {
	c, s := newOfflineClientState(t, "bad")
	good := `{"interface":{"ipv4":"100.64.0.9","ipv6":"fd00:2021:1111::9","upstream_do53":[]},
		"resources":[{"id":"7b0ac0a4-3b1e-4f5a-9c2d-1e2f3a4b5c6d","type":"cidr","address":"10.5.0.0/16","name":"x","sites":[]}],"relays":[]}`
	s.onPortalMessage("init", []byte(good))
	for _, m := range []struct{ event, payload string }{
		{"init", `{"interface":`},
		{"init", `[]`},
		{"authorization_created", `{"resource_id":"7b0ac0a4-3b1e-4f5a-9c2d-1e2f3a4b5c6d","gateway_id":"g","gateway_public_key":"bad","preshared_key":"bad"}`},
		{"authorization_created", `{"resource_id":"nope","gateway_id":"g"}`},
		{"resource_created_or_updated", `{"id":"x","type":"cidr","address":"not-a-prefix"}`},
		{"resource_created_or_updated", `{"id":"y","type":"teleporter"}`},
		{"resource_deleted", `42`},
		{"ice_candidates", `{"gateway_id":"g","candidates":["garbage"]}`},
		{"relays_presence", `{"connected":[{"id":"r","type":"turn","addr":"nope"}]}`},
		{"config_changed", `null`},
		{"what_is_this", `{}`},
		{"authorization_creation_failed", `{"resource_id":"7b0ac0a4-3b1e-4f5a-9c2d-1e2f3a4b5c6d","reason":"brand_new_reason"}`},
	} {
		s.onPortalMessage(m.event, []byte(m.payload))
	}
	if len(s.resources) != 1 || s.ipv4 != netip.MustParseAddr("100.64.0.9") || len(s.gateways) != 0 {
		t.Fatalf("state changed: %d resources, ipv4 %v, %d gateways", len(s.resources), s.ipv4, len(s.gateways))
	}
	if _, kind := c.table.LookupKind(netip.MustParseAddr("10.5.1.1")); kind != routing.KindCIDR {
		t.Fatal("route lost")
	}
}

// TestClientRelaysPresence: init's relays reach the node, relays_presence
// adds and removes them, and a relay without credentials is skipped.
func TestClientRelaysPresence(t *testing.T) {
	c, s := newOfflineClientState(t, "relays")
	s.onPortalMessage("init", []byte(`{"interface":{"ipv4":"100.64.0.9","ipv6":"fd00:2021:1111::9"},"resources":[],
		"relays":[{"id":"r1","type":"turn","addr":"127.0.0.1:3478","username":"1:a","password":"p","expires_at":1},
		          {"id":"r2","type":"turn","addr":"127.0.0.2:3478","username":"","password":"","expires_at":1}]}`))
	if !c.node.HasRelays() || !s.relays["r1"] || s.relays["r2"] {
		t.Fatalf("relays after init: %v", s.relays)
	}
	s.onPortalMessage("relays_presence", []byte(`{"disconnected_ids":["r1"],"connected":[{"id":"r3","type":"turn","addr":"127.0.0.3:3478","username":"1:b","password":"q","expires_at":1}]}`))
	if s.relays["r1"] || !s.relays["r3"] || !c.node.HasRelays() {
		t.Fatalf("relays after presence: %v", s.relays)
	}
	s.onPortalMessage("relays_presence", []byte(`{"disconnected_ids":["r3"],"connected":[]}`))
	if len(s.relays) != 0 || c.node.HasRelays() {
		t.Fatalf("relays after removal: %v", s.relays)
	}
	// A full init resync drops relays it no longer lists.
	s.onPortalMessage("relays_presence", []byte(`{"disconnected_ids":[],"connected":[{"id":"r4","type":"turn","addr":"127.0.0.4:3478","username":"1:c","password":"r","expires_at":1}]}`))
	s.onPortalMessage("init", []byte(`{"interface":{"ipv4":"100.64.0.9","ipv6":"fd00:2021:1111::9"},"resources":[],"relays":[]}`))
	if len(s.relays) != 0 || c.node.HasRelays() {
		t.Fatalf("relays after init without relays: %v", s.relays)
	}
}

// newOfflineClientState is a client session state with no portal behind
// it, for feeding it portal messages directly; all of it is closed when
// the test ends.
func newOfflineClientState(t *testing.T, name string) (*Client, *clientState) {
	t.Helper()
	app, dev := tun.NewMemPair(tun.MemConfig{Name: name})
	t.Cleanup(func() { app.Close() })
	c, err := NewClient(ClientConfig{Tun: dev, FirezoneID: "x", HostIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.node.Close() })
	s := newClientState(c)
	t.Cleanup(s.close)
	s.ctx = context.Background()
	return c, s
}
