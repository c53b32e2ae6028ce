package connlib

import (
	"net/netip"
	"testing"
	"time"
)

// TestClientReset: after Reset (SIGHUP, network change) the session closes
// its connections, takes a new WireGuard key, reconnects to the portal with
// it and, because the connection was carrying traffic, asks for the
// resource again at once, without waiting for a packet (a TCP receiver has
// none to send): the new authorization carries the new key to the gateway
// and the connection is up before the next packet.
func TestClientReset(t *testing.T) {
	p := startClientTestPortal(t, "")
	gw := startScriptedGateway(t, p)
	tc := startTestClient(t, p, ctClientToken, nil)
	tc.waitReady(t)
	src := netip.AddrPortFrom(tc.c.Status().IPv4, 42000)
	dst := netip.MustParseAddrPort("10.99.0.8:7")
	memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte("before")))
	echoUDP(t, gw.lan, dst)
	memRecv(t, tc.app, clientWait, udpTo(src))

	oldKey := tc.c.PublicKey()
	tc.c.Reset("test")
	deadline := time.Now().Add(clientWait)
	for {
		// The key first: a status read before it could predate the reset.
		changed := tc.c.PublicKey() != oldKey
		st := tc.c.Status()
		if changed && len(gw.clientKeys()) == 2 && st.PortalConnected && len(st.Gateways) == 1 && st.Gateways[0].Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no eager reconnection after the reset: key changed %v, status %+v, gateway saw %d keys",
				tc.c.PublicKey() != oldKey, st, len(gw.clientKeys()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	newKey := tc.c.PublicKey()
	keys := gw.clientKeys()
	if len(keys) != 2 || keys[0] != oldKey.String() || keys[1] != newKey.String() {
		t.Fatalf("gateway saw client keys %v; old %s new %s", keys, oldKey, newKey)
	}

	// Traffic flows on the new connection.
	memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte("after")))
	if got := echoUDP(t, gw.lan, dst); string(got.Payload()[8:]) != "after" {
		t.Fatalf("payload %q", got.Payload()[8:])
	}
	memRecv(t, tc.app, clientWait, udpTo(src))
	if n := len(gw.clientKeys()); n != 2 {
		t.Fatalf("gateway saw %d authorizations, want 2 (no new one for the packet)", n)
	}
}
