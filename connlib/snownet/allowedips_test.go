package snownet

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// TestSetAllowedIPsKeepsSession grows a connected peer's allowed IPs: packets
// for the new prefix reach the peer, and the connection is neither replaced
// nor re-signalled.
func TestSetAllowedIPsKeepsSession(t *testing.T) {
	a := newTestPeer(t, "aaaa", "100.64.0.1", nil)
	b := newTestPeer(t, "bbbb", "100.64.0.2", nil)
	connectPair(t, a, b)
	a.mustEvent(EventConnectionEstablished, b.name, 20*time.Second)
	pingOnce(t, a, b, 10*time.Second)

	if err := a.node.SetAllowedIPs(b.name, nil); err != nil {
		t.Fatal(err)
	}
	before := len(a.eventKinds())
	extra := netip.MustParsePrefix("10.9.0.0/24")
	if err := a.node.SetAllowedIPs(b.name, []netip.Prefix{netip.PrefixFrom(b.ip, 32), extra}); err != nil {
		t.Fatalf("SetAllowedIPs: %v", err)
	}
	pkt := tuntest.Ping(netip.MustParseAddr("10.9.0.7"), a.ip)
	a.tun.Outbound <- pkt
	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case p := <-b.tun.Inbound:
			got = bytes.Equal(p, pkt)
		case <-deadline:
			t.Fatal("packet for the added prefix did not reach the peer")
		}
	}
	if after := a.eventKinds(); len(after) != before {
		t.Fatalf("SetAllowedIPs emitted events: %v", after[before:])
	}
	if s := connStats(t, a, b.name); s.State != StateConnected && s.State != StateIdle {
		t.Fatalf("state after SetAllowedIPs: %v", s.State)
	}
	if err := a.node.SetAllowedIPs("nobody", nil); !errors.Is(err, ErrUnknownConnection) {
		t.Fatalf("unknown peer: %v", err)
	}
	a.node.Close()
	if err := a.node.SetAllowedIPs(b.name, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
