package snownet

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v3/stdnet"
	"github.com/pion/turn/v3"
)

const (
	turnUser  = "1700000000:salt"
	turnPass  = "relay-password"
	turnRealm = "firezone"
)

// startTURN runs an in-process pion/turn server on a loopback ephemeral
// port that relays on loopback; it also answers plain STUN Binding.
func startTURN(t testing.TB) netip.AddrPort {
	t.Helper()
	ap, _ := startTURNOn(t, "127.0.0.1:0")
	return ap
}

// startTURNOn is startTURN on a given address; stop closes the server
// (also done at cleanup).
func startTURNOn(t testing.TB, addr string) (netip.AddrPort, func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	// Big buffers on the server side too, so that the in-process relay is
	// not what loses packets in the benchmark.
	_ = pc.(*net.UDPConn).SetReadBuffer(DefaultRecvBufferSize)
	_ = pc.(*net.UDPConn).SetWriteBuffer(DefaultSendBufferSize)
	sn, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         turnRealm,
		LoggerFactory: pionLoggerFactory{testLogger(t).Named("turn")},
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			if username != turnUser {
				return nil, false
			}
			return turn.GenerateAuthKey(username, realm, turnPass), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP("127.0.0.1"),
				Address:      "127.0.0.1",
				Net:          relayNet{Net: sn, rcv: DefaultRecvBufferSize, snd: DefaultSendBufferSize},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { srv.Close() }) }
	t.Cleanup(stop)
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), stop
}

func testRelay(addr netip.AddrPort) Relay {
	return Relay{ID: "relay-1", Addr: addr, Username: turnUser, Password: turnPass, Realm: turnRealm}
}

func TestRelayedLoopback(t *testing.T) { testRelayedLoopback(t, false) }

// TestRelayedLoopbackSharedTURN: the same with TURN on the shared socket.
func TestRelayedLoopbackSharedTURN(t *testing.T) { testRelayedLoopback(t, true) }

func testRelayedLoopback(t *testing.T, shared bool) {
	srv := startTURN(t)
	relayOnly := func(c *Config) {
		c.DisableHostCandidates = true
		c.DisableSrflxCandidates = true
		c.PionTURN = !shared
	}
	a := newTestPeer(t, "alice", "10.0.0.1", relayOnly)
	b := newTestPeer(t, "bob", "10.0.0.2", relayOnly)
	useRelay(t, srv, a, b)
	connectPair(t, a, b)

	ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	if ev.Path != PathRelayed {
		t.Fatalf("alice: established path %v, want relayed", ev.Path)
	}
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	for i := 0; i < 5; i++ {
		pingOnce(t, a, b, 10*time.Second)
		pingOnce(t, b, a, 10*time.Second)
	}
	for _, tc := range []struct {
		tp   *testPeer
		peer string
	}{{a, "bob"}, {b, "alice"}} {
		st := connStats(t, tc.tp, tc.peer)
		if st.Path != PathRelayed || st.Pair == nil || !st.Pair.LocalRelay {
			t.Errorf("%s: path %v pair %+v, want relayed", tc.tp.name, st.Path, st.Pair)
		}
		bs := tc.tp.node.BindStats()
		if bs.RelayedIn == 0 || bs.RelayedOut == 0 {
			t.Errorf("%s: bind stats %+v: want relayed traffic both ways", tc.tp.name, bs)
		}
	}
	// Removing the relay invalidates the local relay candidates and, being
	// the last one, reports that there are no relays.
	if err := a.node.UpdateRelays(nil, []string{"relay-1"}); err != nil {
		t.Fatal(err)
	}
	a.mustEvent(EventInvalidateCandidate, "bob", 5*time.Second)
	a.mustEvent(EventNoRelays, "", 5*time.Second)
}

// A relay announcing another realm than the portal gave is refused: no
// relay candidate, and the refused responses are counted.
func TestRelayRealmEnforced(t *testing.T) { testRelayRealmEnforced(t, false) }

func TestRelayRealmEnforcedSharedTURN(t *testing.T) { testRelayRealmEnforced(t, true) }

func testRelayRealmEnforced(t *testing.T, shared bool) {
	srv := startTURN(t)
	a := newTestPeer(t, "alice", "10.0.0.1", func(c *Config) {
		c.DisableHostCandidates, c.DisableSrflxCandidates = true, true
		c.PionTURN = !shared
	})
	r := testRelay(srv)
	r.Realm = "not-" + turnRealm
	if err := a.node.UpdateRelays([]Relay{r}, nil); err != nil {
		t.Fatal(err)
	}
	k, _ := GeneratePrivateKey()
	if err := a.node.UpsertConnection(ConnParams{
		Peer: "ghost", PublicKey: k.PublicKey(), Local: a.creds,
		Remote: Credentials{Ufrag: "ghst", Pwd: "ghostpasswordghostpass"}, Role: RoleControlling,
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for a.node.BindStats().RealmRefused == 0 {
		if time.Now().After(deadline) {
			t.Fatal("401 with a foreign realm was not refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("refused after %v", time.Until(deadline))
	if ev, ok := a.waitEvent(time.Second, func(e Event) bool { return e.Kind == EventNewCandidate }); ok {
		t.Fatalf("candidate gathered despite the realm mismatch: %s", ev.Candidate)
	}
}
