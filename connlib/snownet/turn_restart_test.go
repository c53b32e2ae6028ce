package snownet

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// tryPing sends one ICMP echo from src's TUN and reports whether dst's TUN
// got it within timeout (other packets are discarded).
func tryPing(src, dst *testPeer, timeout time.Duration) bool {
	pkt := tuntest.Ping(dst.ip, src.ip)
	deadline := time.After(timeout)
	select {
	case src.tun.Outbound <- pkt:
	case <-deadline:
		return false
	}
	for {
		select {
		case got := <-dst.tun.Inbound:
			if bytes.Equal(got, pkt) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestRelayRestartDowntime restarts the relay (pion/turn's server, on the
// same address; it forgets every allocation and does not answer requests
// for unknown ones) under a relay-only connection and measures how long
// the relayed data path is down. Both relayed addresses change, so the old
// ICE pair dies; the test plays the portal: when either side reports the
// connection failed, both sides get a new one (fresh credentials). The
// figure is logged; the test fails if the path does not come back.
func TestRelayRestartDowntime(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a relay and waits for ICE to fail (~15 s)")
	}
	// Runs last: WireGuard may still deliver late pings into the test
	// TUNs, whose writes block until read, so they are drained until the
	// Nodes are closed.
	stopDrain := make(chan struct{})
	t.Cleanup(func() { close(stopDrain) })
	srv, stop := startTURNOn(t, "127.0.0.1:0")
	relayOnly := func(c *Config) { c.DisableHostCandidates, c.DisableSrflxCandidates = true, true }
	a := newTestPeer(t, "alice", "10.0.0.1", relayOnly)
	b := newTestPeer(t, "bob", "10.0.0.2", relayOnly)
	useRelay(t, srv, a, b)
	connectPair(t, a, b)
	if ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout); ev.Path != PathRelayed {
		t.Fatalf("path %v, want relayed", ev.Path)
	}
	pingOnce(t, a, b, 10*time.Second)
	defer func() {
		for _, tp := range []*testPeer{a, b} {
			go func() {
				for {
					select {
					case <-tp.tun.Inbound:
					case <-stopDrain:
						return
					}
				}
			}()
		}
	}()

	stop()
	startTURNOn(t, srv.String())
	restarted := time.Now()
	a.clearEvents()
	b.clearEvents()

	failed := func(tp *testPeer, peer string) bool {
		_, ok := tp.waitEvent(0, func(e Event) bool { return e.Kind == EventConnectionFailed && e.Peer == peer })
		return ok
	}
	var reconnectedAt time.Time
	for gen := 1; time.Since(restarted) < 120*time.Second; {
		if tryPing(a, b, 500*time.Millisecond) {
			down := time.Since(restarted)
			t.Logf("relayed path down for %v after the relay restart (new connection after %v)",
				down.Round(10*time.Millisecond), reconnectedAt.Sub(restarted).Round(10*time.Millisecond))
			return
		}
		if failed(a, "bob") || failed(b, "alice") {
			// The portal's part: a fresh connection on both sides.
			_ = a.node.CloseConnection("bob")
			_ = b.node.CloseConnection("alice")
			a.clearEvents()
			b.clearEvents()
			a.creds.Ufrag = fmt.Sprintf("a%03d", gen)
			b.creds.Ufrag = fmt.Sprintf("b%03d", gen)
			gen++
			connectPair(t, a, b)
			reconnectedAt = time.Now()
		}
	}
	t.Fatalf("the relayed path did not come back within 120 s of the relay restart; events a=%v b=%v", a.eventKinds(), b.eventKinds())
}
