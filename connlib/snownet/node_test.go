package snownet

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const establishTimeout = 30 * time.Second

func TestDirectLoopback(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	connectPair(t, a, b)

	ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	if ev.Path != PathDirect {
		t.Fatalf("alice: established path %v, want direct", ev.Path)
	}
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	if st, path, ok := a.node.State("bob"); !ok || st != StateConnected || path != PathDirect {
		t.Fatalf("State(bob) = %v %v %v", st, path, ok)
	}
	if _, _, ok := a.node.State("nobody"); ok {
		t.Fatal("State of an unknown peer")
	}

	for i := 0; i < 3; i++ {
		pingOnce(t, a, b, 10*time.Second)
		pingOnce(t, b, a, 10*time.Second)
	}
	for _, tc := range []struct {
		tp   *testPeer
		peer string
	}{{a, "bob"}, {b, "alice"}} {
		st := connStats(t, tc.tp, tc.peer)
		if st.Path != PathDirect || st.Pair == nil || st.Pair.LocalRelay || st.Pair.RemoteRelay {
			t.Errorf("%s: path %v pair %+v, want direct", tc.tp.name, st.Path, st.Pair)
		}
		if st.State != StateConnected {
			t.Errorf("%s: state %v", tc.tp.name, st.State)
		}
		if st.RxBytes == 0 || st.TxBytes == 0 || st.LastHandshake.IsZero() {
			t.Errorf("%s: counters %+v", tc.tp.name, st)
		}
	}
	if s := a.node.BindStats(); s.WireGuard == 0 || s.STUN == 0 {
		t.Errorf("bind stats %+v: want WireGuard and STUN traffic on the shared socket", s)
	}
}

func TestReupsertIdenticalReuses(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	connectPair(t, a, b)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	before := connStats(t, a, "bob")

	a.clearEvents()
	if err := a.node.UpsertConnection(paramsFor(a, b, RoleControlling)); err != nil {
		t.Fatal(err)
	}
	// Local candidates are signalled again, the connection is kept.
	a.mustEvent(EventNewCandidate, "bob", 5*time.Second)
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
	after := connStats(t, a, "bob")
	if after.State != StateConnected || after.Pair == nil || before.Pair == nil || after.Pair.Local != before.Pair.Local {
		t.Fatalf("connection not reused: before %+v after %+v", before, after)
	}
	for _, k := range a.eventKinds() {
		if strings.HasPrefix(k, "connection-failed") || strings.HasPrefix(k, "connection-closed") {
			t.Fatalf("unexpected event %s", k)
		}
	}
}

// A peer that restarts with a new key: the old connection fails (ICE
// disconnected, then the grace period), the new one is established.
func TestPeerRestartNewKey(t *testing.T) {
	fast := func(c *Config) {
		c.ICE = ICETimers{KeepaliveInterval: 300 * time.Millisecond, DisconnectedTimeout: 1500 * time.Millisecond, FailedTimeout: 6 * time.Second}
	}
	a := newTestPeer(t, "alice", "10.0.0.1", fast)
	b := newTestPeer(t, "bob", "10.0.0.2", fast)
	connectPair(t, a, b)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	oldKey := b.node.PublicKey()

	b.node.Close()
	b2 := newTestPeer(t, "bob", "10.0.0.2", fast)
	if b2.node.PublicKey() == oldKey {
		t.Fatal("restarted peer kept its key")
	}
	ev := a.mustEvent(EventConnectionFailed, "bob", establishTimeout)
	t.Logf("old connection failed: %s", ev.Reason)

	a.clearEvents()
	connectPair(t, a, b2)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	b2.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	pingOnce(t, a, b2, 10*time.Second)
	pingOnce(t, b2, a, 10*time.Second)
}

// Reset (network change): connections closed with an event, new key, new
// socket; the caller reconnects with the new key.
func TestReset(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	connectPair(t, a, b)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	oldKey, oldPort := a.node.PublicKey(), a.node.Port()

	newKey, err := a.node.Reset()
	if err != nil {
		t.Fatal(err)
	}
	if ev := a.mustEvent(EventConnectionClosed, "bob", 5*time.Second); ev.Reason != "reset" {
		t.Fatalf("reason %q", ev.Reason)
	}
	if newKey == oldKey || a.node.PublicKey() != newKey {
		t.Fatal("key not replaced")
	}
	if a.node.Port() == oldPort || a.node.Port() == 0 {
		t.Fatalf("socket not rebound: port %d -> %d", oldPort, a.node.Port())
	}
	if len(a.node.Stats()) != 0 {
		t.Fatal("connections survived the reset")
	}

	a.clearEvents()
	b.clearEvents()
	connectPair(t, a, b) // b replaces its connection: alice's key changed
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
}

// The IPv6 socket of the shared Bind carries ICE and WireGuard too.
func TestDirectLoopbackIPv6(t *testing.T) {
	if l, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	v6 := func(c *Config) { c.HostIP = netip.MustParseAddr("::1") }
	a := newTestPeer(t, "alice", "10.0.0.1", v6)
	b := newTestPeer(t, "bob", "10.0.0.2", v6)
	connectPair(t, a, b)
	if ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout); ev.Path != PathDirect {
		t.Fatalf("path %v", ev.Path)
	}
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
	if st := connStats(t, a, "bob"); !st.Pair.RemoteAddr.Addr().Is6() {
		t.Fatalf("remote %v, want IPv6", st.Pair.RemoteAddr)
	}
}

func TestUpdateRelaysAndParams(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	r := testRelay(netip.MustParseAddrPort("127.0.0.1:3478"))
	bad := r
	bad.Password = ""
	if err := a.node.UpdateRelays([]Relay{bad}, nil); !errors.Is(err, ErrBadRelay) {
		t.Fatalf("relay without password: %v", err)
	}
	if err := a.node.UpdateRelays([]Relay{r}, nil); err != nil || !a.node.HasRelays() {
		t.Fatalf("add: %v", err)
	}
	r2 := r
	r2.Password = "rotated"
	if err := a.node.UpdateRelays([]Relay{r2}, nil); err != nil {
		t.Fatal(err)
	}
	a.node.mu.Lock()
	got := a.node.relayListLocked()
	a.node.mu.Unlock()
	if len(got) != 1 || got[0].Password != "rotated" {
		t.Fatalf("credentials not replaced: %d relays", len(got))
	}
	if err := a.node.UpdateRelays(nil, []string{r.ID}); err != nil || a.node.HasRelays() {
		t.Fatalf("remove: %v", err)
	}
	a.mustEvent(EventNoRelays, "", 5*time.Second)

	k, _ := GeneratePrivateKey()
	good := ConnParams{Peer: "p", PublicKey: k.PublicKey(), Local: a.creds, Remote: a.creds}
	for name, p := range map[string]ConnParams{
		"empty peer":     {PublicKey: good.PublicKey, Local: a.creds, Remote: a.creds},
		"newline in id":  {Peer: "a\nprivate_key=00", PublicKey: good.PublicKey, Local: a.creds, Remote: a.creds},
		"no key":         {Peer: "p", Local: a.creds, Remote: a.creds},
		"short ufrag":    {Peer: "p", PublicKey: good.PublicKey, Local: Credentials{"ab", a.creds.Pwd}, Remote: a.creds},
		"short password": {Peer: "p", PublicKey: good.PublicKey, Local: a.creds, Remote: Credentials{"abcd", "short"}},
	} {
		if err := a.node.UpsertConnection(p); !errors.Is(err, ErrBadParams) {
			t.Errorf("%s: %v, want ErrBadParams", name, err)
		}
	}
	if err := a.node.UpsertConnection(good); err != nil {
		t.Fatal(err)
	}
	k2, _ := GeneratePrivateKey()
	dupKey := good
	dupKey.Peer = "q"
	if err := a.node.UpsertConnection(dupKey); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("same key, other peer: %v", err)
	}
	dupUfrag := dupKey
	dupUfrag.PublicKey = k2.PublicKey()
	if err := a.node.UpsertConnection(dupUfrag); err != nil {
		t.Errorf("same local ufrag, other peer: %v (muxes must absorb collisions)", err)
	}
	if err := a.node.AddRemoteCandidate("nobody", "candidate:1 1 udp 1 127.0.0.1 9 typ host"); !errors.Is(err, ErrUnknownConnection) {
		t.Errorf("unknown connection: %v", err)
	}
	if err := a.node.CloseConnection("nobody"); !errors.Is(err, ErrUnknownConnection) {
		t.Errorf("close unknown: %v", err)
	}
	a.node.Close()
	if err := a.node.UpsertConnection(good); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestListenPort(t *testing.T) {
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.LocalAddr().(*net.UDPAddr).Port)
	l.Close()
	a := newTestPeer(t, "alice", "10.0.0.1", func(c *Config) { c.ListenPort = port })
	if got := a.node.Port(); got != port {
		t.Fatalf("port %d, want %d", got, port)
	}
}

// Closing and re-creating a connection with the same ICE credentials: the
// old agent withdraws its ufrag from the shared mux when it closes, which
// must not cut off the new agent (regression test).
func TestReconnectSameCredentials(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	for i := 0; i < 8; i++ {
		a.clearEvents()
		b.clearEvents()
		connectPair(t, a, b)
		pingOnce(t, a, b, establishTimeout)
		if err := a.node.CloseConnection("bob"); err != nil {
			t.Fatal(err)
		}
		if err := b.node.CloseConnection("alice"); err != nil {
			t.Fatal(err)
		}
	}
}

// Two connections of one node with the same local ufrag (4-character
// portal ufrags collide on busy gateways): each gets its own mux on the
// shared socket and both work.
func TestLocalUfragCollision(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	c := newTestPeer(t, "carol", "10.0.0.3", nil)
	connectPair(t, a, b) // alice uses a.creds on both connections
	connectPair(t, a, c)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	a.mustEvent(EventConnectionEstablished, "carol", establishTimeout)
	for i := 0; i < 3; i++ {
		pingOnce(t, a, b, 10*time.Second)
		pingOnce(t, a, c, 10*time.Second)
		pingOnce(t, b, a, 10*time.Second)
		pingOnce(t, c, a, 10*time.Second)
	}
	a.node.mu.Lock()
	muxes := len(a.node.muxes)
	a.node.mu.Unlock()
	if muxes != 2 {
		t.Fatalf("%d muxes, want 2", muxes)
	}
	// Closing the second connection retires the extra mux.
	if err := a.node.CloseConnection("carol"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.node.mu.Lock()
		muxes = len(a.node.muxes)
		a.node.mu.Unlock()
		if muxes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("extra mux not retired (%d)", muxes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pingOnce(t, a, b, 10*time.Second)
}
