package snownet

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"
	"github.com/pion/turn/v3"
)

// v6RelayNet makes pion/turn's server (which allocates over "udp4" only)
// relay on [::1], standing in for a relay's IPv6 allocations.
type v6RelayNet struct{ transport.Net }

func (n v6RelayNet) ListenPacket(_, _ string) (net.PacketConn, error) {
	return n.Net.ListenPacket("udp6", "[::1]:0")
}

// startTURN6 runs pion/turn's server on [::1] relaying on [::1].
func startTURN6(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	}
	sn, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         turnRealm,
		LoggerFactory: pionLoggerFactory{testLogger(t).Named("turn6")},
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			return turn.GenerateAuthKey(username, realm, turnPass), username == turnUser
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP("::1"), Address: "::1", Net: v6RelayNet{sn},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// An allocation on an IPv6 relay (asking for an IPv6 relayed address)
// carries ChannelData both ways over IPv6.
func TestTURNAllocIPv6(t *testing.T) {
	srv := startTURN6(t)
	s := newSharedSockOn(t, "udp6", net.IPv6loopback, testRelay(srv), nil)
	ctx := ctxT(t, 20*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	relayed := s.alloc.relayedAddr()
	if !relayed.Addr().Is6() {
		t.Fatalf("relayed address %v, want IPv6", relayed)
	}
	peer, _, ch := s.boundPeer(t, ctx, "udp6", net.IPv6loopback)
	if _, err := s.pc.WriteToUDPAddrPort(AppendChannelData(nil, ch, []byte("to peer")), srv); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "to peer" || from != relayed {
		t.Fatalf("peer got %q from %v (%v), want it from %v", buf[:n], from, err, relayed)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("to us"), relayed); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.data:
		got, payload, err := ParseChannelData(f)
		if err != nil || got != ch || string(payload) != "to us" {
			t.Fatalf("ChannelData %#x %q %v", got, payload, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ChannelData from the IPv6 relay")
	}
}
