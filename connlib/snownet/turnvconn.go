package snownet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pion/stun/v2"
	"github.com/pion/transport/v3"
)

// errNoRelayProxy: pion's TURN client wrote to an address that is not a
// relay the Node knows.
var errNoRelayProxy = errors.New("snownet: no shared turn allocation for that relay")

// sharedTURNNet is the transport.Net given to pion's agents when TURN runs
// on the shared socket: ListenPacket (which pion/ice v3 calls only to open
// the socket of its TURN client) returns a turnVConn served by the relay's
// turnProxy instead of a real socket. Everything else is the wrapped Net.
type sharedTURNNet struct {
	transport.Net
	proxy func(netip.AddrPort) *turnProxy // nil when not a known relay
	port  func() uint16                   // the shared socket's port
}

func (n sharedTURNNet) ListenPacket(network, _ string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, net.UnknownNetworkError(network)
	}
	return newTURNVConn(n.proxy, &net.UDPAddr{IP: net.IPv4zero, Port: int(n.port())}), nil
}

const turnVConnQueue = 256

type vpacket struct {
	b    []byte
	from *net.UDPAddr
}

// turnVConn is the PacketConn one pion TURN client believes is its socket.
// Writes to a relay are answered by that relay's turnProxy; reads return
// the proxy's answers and the relay's data for the peers this agent asked
// for.
//
// Concurrency: safe for concurrent use, like a net.PacketConn.
type turnVConn struct {
	proxyFor func(netip.AddrPort) *turnProxy
	local    *net.UDPAddr

	in     chan vpacket
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	proxy    *turnProxy
	from     *net.UDPAddr // the relay, as a net.Addr for ReadFrom
	vpeer    map[uint16]netip.AddrPort
	vnum     map[netip.AddrPort]uint16
	deadline time.Time
}

var _ net.PacketConn = (*turnVConn)(nil)

func newTURNVConn(proxyFor func(netip.AddrPort) *turnProxy, local *net.UDPAddr) *turnVConn {
	return &turnVConn{
		proxyFor: proxyFor,
		local:    local,
		in:       make(chan vpacket, turnVConnQueue),
		closed:   make(chan struct{}),
		vpeer:    make(map[uint16]netip.AddrPort),
		vnum:     make(map[netip.AddrPort]uint16),
	}
}

// ReadFrom returns the next datagram from the relay.
func (c *turnVConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, nil, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case pk := <-c.in:
		return copy(p, pk.b), pk.from, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-timeout:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo takes what pion's TURN client sends to the relay at addr.
func (c *turnVConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errNoRelayProxy
	}
	ap := ua.AddrPort()
	p, err := c.proxyAt(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	if err != nil {
		return 0, err
	}
	switch Classify(b) {
	case KindSTUN:
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if err := m.Decode(); err != nil {
			return 0, err
		}
		switch m.Type.Class {
		case stun.ClassRequest:
			p.goServe(c, m)
		case stun.ClassIndication:
			if m.Type.Method != stun.MethodSend {
				break
			}
			var xa stun.XORMappedAddress
			data, derr := m.Get(stun.AttrData)
			if xa.GetFromAs(m, stun.AttrXORPeerAddress) != nil || derr != nil {
				break
			}
			if err := p.sendToPeer(udpAddrPort(xa.IP, xa.Port), data); err != nil {
				return 0, err
			}
		}
	case KindChannelData:
		num, payload, _ := ParseChannelData(b)
		c.mu.Lock()
		peer, ok := c.vpeer[num]
		c.mu.Unlock()
		if !ok {
			return 0, errNoChannel
		}
		if err := p.sendToPeer(peer, payload); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// proxyAt returns the proxy of the relay at ap; a conn talks to one relay.
func (c *turnVConn) proxyAt(ap netip.AddrPort) (*turnProxy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxy != nil {
		if c.proxy.server() != ap {
			return nil, errNoRelayProxy
		}
		return c.proxy, nil
	}
	p := c.proxyFor(ap)
	if p == nil || !p.attach(c) {
		return nil, errNoRelayProxy
	}
	c.proxy = p
	c.from = net.UDPAddrFromAddrPort(ap)
	return p, nil
}

// bindVirtual records the channel number pion's client chose for peer.
func (c *turnVConn) bindVirtual(num uint16, peer netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.vnum[peer]; ok {
		delete(c.vpeer, old)
	}
	c.vpeer[num] = peer
	c.vnum[peer] = num
}

// deliver queues a copy of b as if it came from the relay; a full queue
// drops it (UDP semantics).
func (c *turnVConn) deliver(b []byte, _ netip.AddrPort) bool {
	c.mu.Lock()
	from := c.from
	c.mu.Unlock()
	pk := vpacket{b: append([]byte(nil), b...), from: from}
	select {
	case <-c.closed:
		return false
	default:
	}
	select {
	case c.in <- pk:
		return true
	default:
		return false
	}
}

// deliverFromPeer queues payload from peer framed the way pion's client
// expects: ChannelData on its own channel number, or a Data indication
// before it bound one.
func (c *turnVConn) deliverFromPeer(peer netip.AddrPort, payload []byte) bool {
	c.mu.Lock()
	num, ok := c.vnum[peer]
	c.mu.Unlock()
	if ok {
		return c.deliver(AppendChannelData(make([]byte, 0, channelDataHeaderSize+len(payload)), num, payload), netip.AddrPort{})
	}
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		xorAddr{stun.AttrXORPeerAddress, peer}, rawAttr{stun.AttrData, payload}, stun.Fingerprint)
	if err != nil {
		return false
	}
	return c.deliver(m.Raw, netip.AddrPort{})
}

// Close ends reads and detaches from the proxy.
func (c *turnVConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		p := c.proxy
		c.mu.Unlock()
		if p != nil {
			p.detach(c)
		}
	})
	return nil
}

func (c *turnVConn) LocalAddr() net.Addr { return c.local }

func (c *turnVConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *turnVConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *turnVConn) SetWriteDeadline(time.Time) error { return nil }
