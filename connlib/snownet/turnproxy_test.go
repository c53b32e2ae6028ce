package snownet

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// relayOnlyShared makes a relay-only node with TURN on the shared socket.
func relayOnlyShared(c *Config) {
	c.DisableHostCandidates = true
	c.DisableSrflxCandidates = true
	c.PionTURN = false // the default, spelled out
}

// TestSharedTURNTwoPeersOneAllocation: alice reaches bob and carol through
// the relay, and both of her agents use her ONE allocation on the shared
// socket (pion's own client would need one allocation, and one socket, per
// agent; a second one on the shared 5-tuple gets 437).
func TestSharedTURNTwoPeersOneAllocation(t *testing.T) {
	srv := startTURN(t)
	a := newTestPeer(t, "alice", "10.0.0.1", relayOnlyShared)
	b := newTestPeer(t, "bob", "10.0.0.2", relayOnlyShared)
	c := newTestPeer(t, "carol", "10.0.0.3", relayOnlyShared)
	useRelay(t, srv, a, b, c)
	connectPair(t, a, b)
	connectPair(t, a, c)
	for _, peer := range []string{"bob", "carol"} {
		if ev := a.mustEvent(EventConnectionEstablished, peer, establishTimeout); ev.Path != PathRelayed {
			t.Fatalf("alice->%s: path %v, want relayed", peer, ev.Path)
		}
	}
	for i := 0; i < 3; i++ {
		pingOnce(t, a, b, 10*time.Second)
		pingOnce(t, b, a, 10*time.Second)
		pingOnce(t, a, c, 10*time.Second)
		pingOnce(t, c, a, 10*time.Second)
	}

	a.node.mu.Lock()
	proxies := len(a.node.proxies)
	p := a.node.proxies[srv]
	a.node.mu.Unlock()
	if proxies != 1 || p == nil {
		t.Fatalf("alice has %d shared allocations, want 1 on %v", proxies, srv)
	}
	relayed := p.alloc.relayedAddr()
	if !relayed.IsValid() {
		t.Fatal("shared allocation has no relayed address")
	}
	want := fmt.Sprintf("%s %d typ relay", relayed.Addr(), relayed.Port())
	for _, peer := range []string{"bob", "carol"} {
		st := connStats(t, a, peer)
		if st.Pair == nil || !st.Pair.LocalRelay {
			t.Fatalf("alice->%s: pair %+v, want a local relay candidate", peer, st.Pair)
		}
		if !strings.Contains(st.Pair.Local, want) {
			t.Errorf("alice->%s: local candidate %q is not the shared allocation %v", peer, st.Pair.Local, relayed)
		}
		ch, ok := p.alloc.channelFor(mustRemoteAddr(t, st.Pair.Remote))
		if !ok {
			t.Errorf("alice->%s: no channel bound to the remote candidate %q", peer, st.Pair.Remote)
		}
		// The Bind frames ChannelData itself (no pion conn on the path).
		e := a.node.bind.peer(peer)
		if pp := e.path.Load(); pp.turn != p || pp.channel != ch || p.data.route(ch) != e {
			t.Errorf("alice->%s: path %+v, want the Bind's ChannelData path on channel %#x", peer, pp, ch)
		}
	}
	before := a.node.BindStats()
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
	if after := a.node.BindStats(); after.RelayedIn <= before.RelayedIn || after.RelayedOut <= before.RelayedOut {
		t.Errorf("relayed counters did not move: %+v -> %+v", before, after)
	}
	if bs := a.node.BindStats(); bs.ChannelData != 0 {
		t.Errorf("alice dropped %d ChannelData frames; all came from her relay", bs.ChannelData)
	}
}

func mustRemoteAddr(t *testing.T, sdp string) netip.AddrPort {
	t.Helper()
	c, err := parseCandidate(sdp)
	if err != nil {
		t.Fatalf("candidate %q: %v", sdp, err)
	}
	a, err := netip.ParseAddr(c.Address())
	if err != nil {
		t.Fatalf("candidate %q: %v", sdp, err)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(c.Port()))
}
