package snownet

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// frozenClock never advances: lifecycle timers (DisconnectGrace, idle,
// candidate timeout) never fire, so a failure can only come from an
// explicit cause.
type frozenClock struct{ t time.Time }

func (c frozenClock) Now() time.Time { return c.t }

// TestRelayLossFailsConnection restarts the relay under a relay-only
// connection with the lifecycle on a frozen clock and pion's Failed
// timeout out of reach, so ICE's way of failing the connection
// (Disconnected + DisconnectGrace, or Failed) cannot happen within the
// test. The connection must still fail, because the TURN client learnt
// that the allocation under its pair was replaced, with that reason and
// marked active (the client reconnects at once); the next connection to
// the peer gets the short relay acceptance wait.
func TestRelayLossFailsConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a relay and waits for the TURN watchdog (~6 s)")
	}
	stopDrain := make(chan struct{})
	var drains sync.WaitGroup
	t.Cleanup(func() { close(stopDrain); drains.Wait() })
	srv, stop := startTURNOn(t, "127.0.0.1:0")
	clock := frozenClock{time.Unix(1_700_000_000, 0)}
	mod := func(c *Config) {
		c.DisableHostCandidates, c.DisableSrflxCandidates = true, true
		c.Clock = clock
		c.ICE.FailedTimeout = 10 * time.Minute
	}
	a := newTestPeer(t, "alice", "10.0.0.1", mod)
	b := newTestPeer(t, "bob", "10.0.0.2", mod)
	useRelay(t, srv, a, b)
	connectPair(t, a, b)
	if ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout); ev.Path != PathRelayed {
		t.Fatalf("path %v, want relayed", ev.Path)
	}
	pingOnce(t, a, b, 10*time.Second)
	if d := a.node.relayAcceptance("bob"); d != nil {
		t.Fatalf("relay acceptance before any loss: %v, want pion's default", *d)
	}

	stop()
	startTURNOn(t, srv.String())
	// Traffic through the relay, so the watchdog sees our sends go
	// unanswered (a drain keeps the TUNs from blocking).
	for _, tp := range []*testPeer{a, b} {
		drains.Add(1)
		go func() {
			defer drains.Done()
			for {
				select {
				case <-tp.tun.Inbound:
				case <-stopDrain:
					return
				}
			}
		}()
	}
	drains.Add(1)
	go func() {
		defer drains.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case a.tun.Outbound <- tuntest.Ping(b.ip, a.ip):
			case <-stopDrain:
				return
			}
			select {
			case <-tick.C:
			case <-stopDrain:
				return
			}
		}
	}()

	// Generous: the watchdog needs ~3 s of silence plus a 2 s check; ICE
	// alone would take 10 min here.
	ev, ok := a.waitEvent(60*time.Second, func(e Event) bool { return e.Kind == EventConnectionFailed && e.Peer == "bob" })
	if !ok {
		t.Fatalf("alice's connection to bob did not fail after the relay lost its allocation; events %v", a.eventKinds())
	}
	if ev.Reason != reasonRelayLost || !ev.Active {
		t.Fatalf("failure %+v, want reason %q and active", ev, reasonRelayLost)
	}
	d := a.node.relayAcceptance("bob")
	if d == nil || *d != relayLostAcceptance {
		t.Fatalf("relay acceptance for bob's next connection %v, want %v", d, relayLostAcceptance)
	}
}

// relayAcceptance is relayAcceptanceLocked at the node's clock.
func (n *Node) relayAcceptance(peer string) *time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.relayAcceptanceLocked(peer, n.clock.Now())
}

func TestSendsFromRelayed(t *testing.T) {
	relayed := netip.MustParseAddrPort("198.51.100.7:50000")
	relayCand := "candidate:1 1 udp 16777215 198.51.100.7 50000 typ relay raddr 0.0.0.0 rport 4000"
	otherCand := "candidate:1 1 udp 16777215 198.51.100.7 50002 typ relay raddr 0.0.0.0 rport 4000"
	otherRelay := "candidate:1 1 udp 16777215 203.0.113.9 50000 typ relay raddr 0.0.0.0 rport 4000"
	hostCand := "candidate:2 1 udp 2130706431 192.0.2.1 4000 typ host"
	for _, tc := range []struct {
		name string
		p    *PairInfo
		want bool
	}{
		{"not nominated", nil, false},
		{"direct", &PairInfo{Local: hostCand, Remote: hostCand}, false},
		{"our relayed address", &PairInfo{Local: relayCand, Remote: hostCand, LocalRelay: true}, true},
		{"another allocation on the relay", &PairInfo{Local: otherCand, Remote: hostCand, LocalRelay: true}, false},
		{"another relay", &PairInfo{Local: otherRelay, Remote: hostCand, LocalRelay: true}, false},
		{"only the peer's relay", &PairInfo{Local: hostCand, Remote: relayCand, RemoteAddr: relayed, RemoteRelay: true}, false},
		{"unparseable", &PairInfo{Local: "candidate:garbage", LocalRelay: true}, false},
	} {
		if got := sendsFromRelayed(tc.p, relayed); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRelayAcceptanceMemory(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	n := &Node{relayLost: map[string]time.Time{"gw": t0}}
	if d := n.relayAcceptanceLocked("other", t0); d != nil {
		t.Fatalf("peer without a loss: %v", *d)
	}
	if d := n.relayAcceptanceLocked("gw", t0.Add(relayLostMemory/2)); d == nil || *d != relayLostAcceptance {
		t.Fatalf("within the memory: %v, want %v", d, relayLostAcceptance)
	}
	if d := n.relayAcceptanceLocked("gw", t0.Add(relayLostMemory)); d != nil {
		t.Fatalf("after the memory: %v", *d)
	}
	if _, ok := n.relayLost["gw"]; ok {
		t.Fatal("expired entry kept")
	}
	var empty Node
	if d := empty.relayAcceptanceLocked("gw", t0); d != nil {
		t.Fatalf("nil map: %v", *d)
	}
}

// The allocation reports each replacement of a lost allocation once, with
// the address the connections were using, also when the first
// re-allocation failed and a later allocation replaced it.
func TestTURNAllocReportsReplacement(t *testing.T) {
	f := startFakeRelay(t)
	s := newSharedSock(t, testRelay(f.addr()), nil)
	got := make(chan [2]netip.AddrPort, 8)
	s.alloc.onReplaced = func(old, now netip.AddrPort) { got <- [2]netip.AddrPort{old, now} }
	ctx := ctxT(t, 20*time.Second)
	next := func() [2]netip.AddrPort {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-ctx.Done():
			t.Fatal("no replacement reported")
			return [2]netip.AddrPort{}
		}
	}
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	first := s.alloc.relayedAddr()

	f.mu.Lock()
	f.lost = true // REFRESH answered 437
	f.mu.Unlock()
	if err := s.alloc.check(ctx); err != nil {
		t.Fatal(err)
	}
	second := s.alloc.relayedAddr()
	if r := next(); r != [2]netip.AddrPort{first, second} {
		t.Fatalf("reported %v, want %v -> %v", r, first, second)
	}

	// A re-allocation that fails (here: cancelled) leaves no allocation;
	// the one that finally succeeds reports the address lost before.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.alloc.reallocate(dead); err == nil {
		t.Fatal("re-allocation with a cancelled context succeeded")
	}
	if s.alloc.relayedAddr().IsValid() {
		t.Fatal("relayed address still set after a failed re-allocation")
	}
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	third := s.alloc.relayedAddr()
	if r := next(); r != [2]netip.AddrPort{second, third} {
		t.Fatalf("reported %v, want %v -> %v", r, second, third)
	}
	select {
	case r := <-got:
		t.Fatalf("extra report %v", r)
	default:
	}
}

// TestRelayLossRestartsReusedConnection: the gateway's side of a race seen
// end to end. The client's connection failed on its own allocation loss
// and it re-asked with the same parameters; the gateway's upsert reused
// its connection (still healthy to its eyes), and a moment later the
// gateway's own allocation under that connection was found replaced. The
// connection must be restarted (no failure event), so that the client's
// new agent reaches it, not failed (the client would wait for ICE).
func TestRelayLossRestartsReusedConnection(t *testing.T) {
	srv := startTURN(t)
	relayOnly := func(c *Config) { c.DisableHostCandidates, c.DisableSrflxCandidates = true, true }
	a := newTestPeer(t, "alice", "10.0.0.1", relayOnly)
	b := newTestPeer(t, "bob", "10.0.0.2", relayOnly)
	useRelay(t, srv, a, b)
	connectPair(t, a, b)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)

	b.node.mu.Lock()
	old := b.node.conns["alice"]
	local, ok := candidateAddrPort(old.pair.Local)
	b.node.mu.Unlock()
	if !ok || !old.pair.LocalRelay {
		t.Fatalf("bob's pair %+v is not on his relay allocation", old.pair)
	}
	a.clearEvents()
	b.clearEvents()
	// alice (the client) re-asks with the same parameters; bob reuses.
	if err := a.node.CloseConnection("bob"); err != nil {
		t.Fatal(err)
	}
	if err := b.node.UpsertConnection(paramsFor(b, a, RoleControlled)); err != nil {
		t.Fatal(err)
	}
	b.node.mu.Lock()
	reused := b.node.conns["alice"] == old
	b.node.mu.Unlock()
	if !reused {
		t.Fatal("bob did not reuse his healthy connection")
	}
	// bob's allocation is found replaced (what his TURN client reports).
	b.node.relayAllocationReplaced(srv, local, netip.MustParseAddrPort("127.0.0.1:1"))
	b.node.mu.Lock()
	restarted := b.node.conns["alice"] != nil && b.node.conns["alice"] != old
	b.node.mu.Unlock()
	if !restarted {
		t.Fatal("bob's reused connection was not restarted")
	}
	if err := a.node.UpsertConnection(paramsFor(a, b, RoleControlling)); err != nil {
		t.Fatal(err)
	}
	// The portal's part: bob's candidates gathered before alice's new
	// connection existed reach it too.
	b.mu.Lock()
	var replay []string
	for _, ev := range b.events {
		if ev.Kind == EventNewCandidate && ev.Peer == "alice" {
			replay = append(replay, ev.Candidate)
		}
	}
	b.mu.Unlock()
	for _, c := range replay {
		_ = a.node.AddRemoteCandidate("bob", c)
	}
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	if _, failed := b.waitEvent(0, func(e Event) bool { return e.Kind == EventConnectionFailed }); failed {
		t.Fatalf("bob reported a failure: %v", b.eventKinds())
	}
}
