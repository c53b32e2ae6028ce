package snownet

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// testPeer is one Node with an in-memory TUN.
type testPeer struct {
	t    testing.TB
	name string
	ip   netip.Addr
	tun  *tuntest.ChannelTUN
	node *Node

	mu     sync.Mutex
	events []Event
	cond   *sync.Cond
	peers  map[string]*testPeer // where NewCandidate events are forwarded, by peer id
	creds  Credentials
}

// testLogger logs to stderr at Debug when SNOWNET_DEBUG is set (not via
// t.Log: pion goroutines may still log after a test returned).
func testLogger(t testing.TB) *zap.Logger {
	if os.Getenv("SNOWNET_DEBUG") != "" {
		l, err := zap.NewDevelopment()
		if err == nil {
			return l.Named(t.Name())
		}
	}
	return zap.NewNop()
}

// newTestPeer creates a Node on loopback; mod may adjust the config.
func newTestPeer(t testing.TB, name string, ip string, mod func(*Config)) *testPeer {
	t.Helper()
	tp := &testPeer{t: t, name: name, ip: netip.MustParseAddr(ip), tun: tuntest.NewChannelTUN()}
	tp.cond = sync.NewCond(&tp.mu)
	tp.creds = Credentials{Ufrag: fmt.Sprintf("%-4.4s", name+"uf"), Pwd: fmt.Sprintf("%-22.22s", name+"passwordpassword123456")}
	cfg := Config{
		Tun:    tp.tun.TUN(),
		Logger: testLogger(t).Named(name),
		HostIP: netip.MustParseAddr("127.0.0.1"),
		ICE:    ICETimers{},
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatalf("NewNode %s: %v", name, err)
	}
	tp.node = n
	t.Cleanup(func() { n.Close() })
	go tp.pump(n)
	return tp
}

func (tp *testPeer) pump(n *Node) {
	for ev := range n.Events() {
		tp.mu.Lock()
		tp.events = append(tp.events, ev)
		peer := tp.peers[ev.Peer]
		tp.cond.Broadcast()
		tp.mu.Unlock()
		if ev.Kind == EventNewCandidate && peer != nil {
			_ = peer.node.AddRemoteCandidate(tp.name, ev.Candidate)
		}
	}
}

// waitEvent waits for an event matching ok, returning it.
func (tp *testPeer) waitEvent(timeout time.Duration, ok func(Event) bool) (Event, bool) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		tp.mu.Lock()
		tp.cond.Broadcast()
		tp.mu.Unlock()
	})
	defer timer.Stop()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for {
		for _, ev := range tp.events {
			if ok(ev) {
				return ev, true
			}
		}
		if time.Now().After(deadline) {
			return Event{}, false
		}
		tp.cond.Wait()
	}
}

func (tp *testPeer) mustEvent(kind EventKind, peer string, timeout time.Duration) Event {
	tp.t.Helper()
	ev, ok := tp.waitEvent(timeout, func(e Event) bool { return e.Kind == kind && e.Peer == peer })
	if !ok {
		tp.t.Fatalf("%s: no %v event for %q within %v; events: %v", tp.name, kind, peer, timeout, tp.eventKinds())
	}
	return ev
}

func (tp *testPeer) eventKinds() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []string
	for _, e := range tp.events {
		out = append(out, e.Kind.String()+":"+e.Peer+":"+e.Reason)
	}
	return out
}

func (tp *testPeer) clearEvents() {
	tp.mu.Lock()
	tp.events = nil
	tp.mu.Unlock()
}

// connectPair upserts the connection on both sides: a controlling, b
// controlled. Candidates are forwarded to the other side only once both
// connections exist (like the portal, which signals after authorizing);
// the ones emitted earlier are replayed.
func connectPair(t testing.TB, a, b *testPeer) {
	t.Helper()
	upsertPair(t, a, b)
	forwardCandidates(a, b)
	forwardCandidates(b, a)
}

// upsertPair upserts the connection on both sides, b (controlled) first.
func upsertPair(t testing.TB, a, b *testPeer) {
	t.Helper()
	if err := b.node.UpsertConnection(paramsFor(b, a, RoleControlled)); err != nil {
		t.Fatalf("upsert on %s: %v", b.name, err)
	}
	if err := a.node.UpsertConnection(paramsFor(a, b, RoleControlling)); err != nil {
		t.Fatalf("upsert on %s: %v", a.name, err)
	}
}

// forwardCandidates makes from's future candidates for to reach to, and
// replays the ones from emitted so far.
func forwardCandidates(from, to *testPeer) {
	from.mu.Lock()
	if from.peers == nil {
		from.peers = make(map[string]*testPeer)
	}
	from.peers[to.name] = to
	var replay []string
	for _, ev := range from.events {
		if ev.Kind == EventNewCandidate && ev.Peer == to.name {
			replay = append(replay, ev.Candidate)
		}
	}
	from.mu.Unlock()
	for _, c := range replay {
		_ = to.node.AddRemoteCandidate(from.name, c)
	}
}

// paramsFor is local's view of the connection to remote.
func paramsFor(local, remote *testPeer, role Role) ConnParams {
	return ConnParams{
		Peer: remote.name, PublicKey: remote.node.PublicKey(), PresharedKey: Key{1, 2, 3},
		Local: local.creds, Remote: remote.creds, Role: role,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(remote.ip, 32)},
	}
}

// pingOnce sends an ICMP echo from src's TUN and waits for it on dst's.
func pingOnce(t testing.TB, src, dst *testPeer, timeout time.Duration) {
	t.Helper()
	pkt := tuntest.Ping(dst.ip, src.ip)
	deadline := time.After(timeout)
	select {
	case src.tun.Outbound <- pkt:
	case <-deadline:
		t.Fatalf("ping %s->%s: TUN did not take the packet", src.name, dst.name)
	}
	for {
		select {
		case got := <-dst.tun.Inbound:
			if bytes.Equal(got, pkt) {
				return
			}
		case <-deadline:
			t.Fatalf("ping %s->%s: not received within %v", src.name, dst.name, timeout)
		}
	}
}

func connStats(t testing.TB, tp *testPeer, peer string) ConnStats {
	t.Helper()
	for _, s := range tp.node.Stats() {
		if s.Peer == peer {
			return s
		}
	}
	t.Fatalf("%s: no stats for %s", tp.name, peer)
	return ConnStats{}
}

// useRelay gives every peer the one test relay at srv.
func useRelay(t testing.TB, srv netip.AddrPort, peers ...*testPeer) {
	t.Helper()
	for _, tp := range peers {
		if err := tp.node.UpdateRelays([]Relay{testRelay(srv)}, nil); err != nil {
			t.Fatal(err)
		}
	}
}
