package snownet

import (
	"testing"
	"time"
)

// connectDelayed upserts the connection on both sides like connectPair,
// but the controlling side's candidates reach the controlled side only
// after delay (a slow portal, a loaded gateway), while the controlled
// side's candidates reach the controlling side at once.
func connectDelayed(t *testing.T, a, b *testPeer, delay time.Duration) {
	t.Helper()
	upsertPair(t, a, b)
	forwardCandidates(b, a)
	time.AfterFunc(delay, func() { forwardCandidates(a, b) })
}

// TestLateCandidatesBehindNATs is the regression test for a rare set-up
// failure seen in examples/bench (gateway: "authorization created", then
// nothing for 30 s). Both peers are behind port-restricted NATs, like
// nftables masquerade, so the controlling side's checks are dropped by the
// controlled side's NAT until the controlled side has learnt the
// candidates and sent checks of its own. Here that takes 4 s. pion/ice
// marks a pair failed after MaxBindingRequests unanswered checks (7 at
// 200 ms: 1.6 s) and a controlling agent never checks a failed pair again,
// even when the peer's checks then arrive on it; every pair was dead and
// the agent sat in Checking until pion's 30 s checking timeout. The checks
// must keep going for as long as a connection may take to set up.
func TestLateCandidatesBehindNATs(t *testing.T) {
	netA, netB, relay := buildNATNet(t, natPortRestricted, natPortRestricted)
	a := vnetPeer(t, "alice", "10.0.0.1", netA, vnetLANA, relay)
	b := vnetPeer(t, "bob", "10.0.0.2", netB, vnetLANB, relay)
	start := time.Now()
	connectDelayed(t, a, b, 4*time.Second)
	// pion gives up on a connection still checking after 30 s; well
	// before that, a working path must have been found.
	a.mustEvent(EventConnectionEstablished, "bob", 20*time.Second)
	b.mustEvent(EventConnectionEstablished, "alice", 20*time.Second)
	t.Logf("established %v after the upsert (candidates delayed by 4 s)", time.Since(start).Round(time.Millisecond))
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
}

func TestMaxBindingRequests(t *testing.T) {
	for _, tc := range []struct {
		interval, budget time.Duration
		want             uint16
	}{
		{DefaultCheckInterval, DefaultCheckBudget, 300},
		{200 * time.Millisecond, DefaultCheckBudget, 75},
		{200 * time.Millisecond, time.Second, 7}, // never below pion's default
		{time.Nanosecond, time.Hour, 0xffff},     // clamped
	} {
		if got := maxBindingRequests(tc.interval, tc.budget); got != tc.want {
			t.Errorf("maxBindingRequests(%v, %v) = %d, want %d", tc.interval, tc.budget, got, tc.want)
		}
	}
}

func TestHandshakePollDelay(t *testing.T) {
	const max = 100 * time.Millisecond
	for _, tc := range []struct{ age, want time.Duration }{
		{0, 2 * time.Millisecond},
		{-time.Second, 2 * time.Millisecond}, // clock stepped back
		{80 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, max},
		{time.Hour, max},
	} {
		if got := handshakePollDelay(tc.age, max); got != tc.want {
			t.Errorf("handshakePollDelay(%v) = %v, want %v", tc.age, got, tc.want)
		}
	}
}

// TestReupsertReplacesDisconnected: identical parameters reuse a healthy
// connection (the gateway gets create_authorization for every resource),
// but replace one whose ICE lost its path: the peer re-asks after its own
// side failed, with a new agent, while ours holds a dead pair and a
// disconnect timer.
func TestReupsertReplacesDisconnected(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	connectPair(t, a, b)
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	agent := func() *iceSession {
		b.node.mu.Lock()
		defer b.node.mu.Unlock()
		return b.node.conns["alice"].ice
	}
	first := agent()
	if err := b.node.UpsertConnection(paramsFor(b, a, RoleControlled)); err != nil {
		t.Fatal(err)
	}
	if agent() != first {
		t.Fatal("a healthy connection was replaced by an identical upsert")
	}
	b.node.mu.Lock()
	b.node.conns["alice"].lc.iceDisconnected(b.node.clock.Now())
	b.node.mu.Unlock()
	if err := b.node.UpsertConnection(paramsFor(b, a, RoleControlled)); err != nil {
		t.Fatal(err)
	}
	if agent() == first {
		t.Fatal("a disconnected connection was reused")
	}
}
