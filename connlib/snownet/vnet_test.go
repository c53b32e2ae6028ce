package snownet

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v3/vnet"
	"github.com/pion/turn/v3"
	"golang.zx2c4.com/wireguard/conn"
)

// vnetBind is a minimal conn.Bind over one pion vnet UDP socket, standing in
// for StdNetBind (which needs real sockets) under the shared Bind.
type vnetBind struct {
	net *vnet.Net
	ip  string

	mu     sync.Mutex
	pc     net.PacketConn
	closed bool
}

var _ conn.Bind = (*vnetBind)(nil)

func (b *vnetBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	pc, err := b.net.ListenPacket("udp4", fmt.Sprintf("%s:%d", b.ip, port))
	if err != nil {
		return nil, 0, err
	}
	b.pc, b.closed = pc, false
	fn := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, addr, err := pc.ReadFrom(bufs[0])
		if err != nil {
			return 0, net.ErrClosed
		}
		sizes[0] = n
		eps[0] = &conn.StdNetEndpoint{AddrPort: addr.(*net.UDPAddr).AddrPort()}
		return 1, nil
	}
	return []conn.ReceiveFunc{fn}, uint16(pc.LocalAddr().(*net.UDPAddr).Port), nil
}

func (b *vnetBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc != nil {
		b.pc.Close()
		b.pc = nil
	}
	return nil
}

func (b *vnetBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	pc := b.pc
	b.mu.Unlock()
	if pc == nil {
		return net.ErrClosed
	}
	dst := net.UDPAddrFromAddrPort(ep.(*conn.StdNetEndpoint).AddrPort)
	for _, buf := range bufs {
		if _, err := pc.WriteTo(buf, dst); err != nil {
			return err
		}
	}
	return nil
}

func (b *vnetBind) SetMark(uint32) error { return nil }
func (b *vnetBind) ParseEndpoint(string) (conn.Endpoint, error) {
	return nil, conn.ErrWrongEndpointType
}
func (b *vnetBind) BatchSize() int { return 1 }

const (
	vnetRelayIP = "1.2.3.4"
	vnetLANA    = "192.168.0.1"
	vnetLANB    = "10.2.0.1"
)

// buildNATNet makes WAN + two NATed LANs and a TURN/STUN server on the WAN.
func buildNATNet(t *testing.T, natA, natB *vnet.NATType) (*vnet.Net, *vnet.Net, netip.AddrPort) {
	t.Helper()
	lf := pionLoggerFactory{testLogger(t).Named("vnet")}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "0.0.0.0/0", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	wanNet, err := vnet.NewNet(&vnet.NetConfig{StaticIP: vnetRelayIP})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(wanNet); err != nil {
		t.Fatal(err)
	}
	lan := func(global, local, cidr string, nat *vnet.NATType) *vnet.Net {
		r, err := vnet.NewRouter(&vnet.RouterConfig{StaticIPs: []string{global}, CIDR: cidr, NATType: nat, LoggerFactory: lf})
		if err != nil {
			t.Fatal(err)
		}
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{local}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AddNet(n); err != nil {
			t.Fatal(err)
		}
		if err := wan.AddRouter(r); err != nil {
			t.Fatal(err)
		}
		return n
	}
	netA := lan("27.1.1.1", vnetLANA, "192.168.0.0/24", natA)
	netB := lan("28.1.1.1", vnetLANB, "10.2.0.0/24", natB)
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })

	pc, err := wanNet.ListenPacket("udp4", vnetRelayIP+":3478")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         turnRealm,
		LoggerFactory: lf,
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			if username != turnUser {
				return nil, false
			}
			return turn.GenerateAuthKey(username, realm, turnPass), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP(vnetRelayIP), Address: "0.0.0.0", Net: wanNet,
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return netA, netB, netip.MustParseAddrPort(vnetRelayIP + ":3478")
}

func vnetPeer(t *testing.T, name, tunIP string, n *vnet.Net, hostIP string, relay netip.AddrPort, mods ...func(*Config)) *testPeer {
	tp := newTestPeer(t, name, tunIP, func(c *Config) {
		c.Bind.Inner = &vnetBind{net: n, ip: hostIP}
		c.Net = n
		c.HostIP = netip.MustParseAddr(hostIP)
		for _, m := range mods {
			m(c)
		}
	})
	if err := tp.node.UpdateRelays([]Relay{testRelay(relay)}, nil); err != nil {
		t.Fatal(err)
	}
	return tp
}

var (
	natFullCone       = &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}
	natPortRestricted = &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
	natSymmetric      = &vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
)

// Both behind endpoint-independent NATs: the host candidates are
// unreachable, the srflx ones work, so the path is direct via srflx.
func TestVNetEndpointIndependentNATDirect(t *testing.T) {
	netA, netB, relay := buildNATNet(t, natFullCone, natFullCone)
	a := vnetPeer(t, "alice", "10.0.0.1", netA, vnetLANA, relay)
	b := vnetPeer(t, "bob", "10.0.0.2", netB, vnetLANB, relay)
	connectPair(t, a, b)
	ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
	st := connStats(t, a, "bob")
	if ev.Path != PathDirect || st.Path != PathDirect {
		t.Fatalf("path %v / %v, want direct; pair %+v", ev.Path, st.Path, st.Pair)
	}
	if r := st.Pair.Remote; !strings.Contains(r, "typ srflx") && !strings.Contains(r, "typ prflx") {
		t.Fatalf("remote candidate %q: want the peer's NAT mapping (srflx/prflx)", r)
	}
	if got := st.Pair.RemoteAddr.Addr().String(); got != "28.1.1.1" {
		t.Fatalf("remote address %s, want the peer's public NAT address 28.1.1.1", got)
	}
}

// One side behind a symmetric NAT, the other port-restricted: no direct
// path exists, so the connection goes through the relay.
func TestVNetSymmetricNATRelayed(t *testing.T) { testVNetSymmetricNATRelayed(t, false) }

// TestVNetSymmetricNATRelayedSharedTURN: the same with TURN on the shared
// socket (the allocation's 5-tuple is the shared socket's NAT mapping).
func TestVNetSymmetricNATRelayedSharedTURN(t *testing.T) { testVNetSymmetricNATRelayed(t, true) }

func testVNetSymmetricNATRelayed(t *testing.T, shared bool) {
	netA, netB, relay := buildNATNet(t, natSymmetric, natPortRestricted)
	mod := func(c *Config) { c.PionTURN = !shared }
	a := vnetPeer(t, "alice", "10.0.0.1", netA, vnetLANA, relay, mod)
	b := vnetPeer(t, "bob", "10.0.0.2", netB, vnetLANB, relay, mod)
	connectPair(t, a, b)
	ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)
	pingOnce(t, b, a, 10*time.Second)
	for _, tc := range []struct {
		tp   *testPeer
		peer string
	}{{a, "bob"}, {b, "alice"}} {
		st := connStats(t, tc.tp, tc.peer)
		if st.Path != PathRelayed || st.Pair == nil || !(st.Pair.LocalRelay || st.Pair.RemoteRelay) {
			t.Fatalf("%s: path %v pair %+v, want relayed", tc.tp.name, st.Path, st.Pair)
		}
	}
	if ev.Path != PathRelayed {
		t.Fatalf("established path %v", ev.Path)
	}
}
