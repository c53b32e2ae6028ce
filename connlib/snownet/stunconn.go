package snownet

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

const (
	stunQueueLen  = 256
	stunSlotBytes = 1500 // ICE checks are < 200 bytes; Binding responses < 100
)

type stunPacket struct {
	buf  [stunSlotBytes]byte
	n    int
	from netip.AddrPort
}

// STUNConn is the virtual net.PacketConn pion's UDP mux reads STUN from and
// writes STUN to. Reads are fed by the Bind's classifier (only STUN ever
// arrives here, so the mux never buffers WireGuard); writes leave through
// the Bind's shared socket.
//
// Concurrency: safe for concurrent use. Close only stops ReadFrom (with
// net.ErrClosed); it never closes the shared socket, because pion's mux
// closes its conn whenever its read loop ends.
type STUNConn struct {
	bind  *Bind
	local *net.UDPAddr

	in   chan *stunPacket
	free chan *stunPacket

	closeOnce sync.Once
	done      chan struct{}
}

var _ net.PacketConn = (*STUNConn)(nil)

// newSTUNConn returns a conn reporting local as its address (the mux reads
// it once, and it must be a *net.UDPAddr whose port is the Bind's).
func newSTUNConn(b *Bind, local *net.UDPAddr) *STUNConn {
	c := &STUNConn{
		bind:  b,
		local: local,
		in:    make(chan *stunPacket, stunQueueLen),
		free:  make(chan *stunPacket, stunQueueLen),
		done:  make(chan struct{}),
	}
	for i := 0; i < stunQueueLen; i++ {
		c.free <- new(stunPacket)
	}
	return c
}

// deliver copies p into the queue; false if it was dropped (queue full,
// too large, closed). It never blocks.
func (c *STUNConn) deliver(p []byte, from netip.AddrPort) bool {
	if len(p) > stunSlotBytes {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
	}
	var s *stunPacket
	select {
	case s = <-c.free:
	default:
		return false
	}
	s.n = copy(s.buf[:], p)
	s.from = from
	select {
	case c.in <- s:
		return true
	default:
		c.free <- s
		return false
	}
}

// ReadFrom blocks for the next STUN datagram.
func (c *STUNConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case s := <-c.in:
		n := copy(p, s.buf[:s.n])
		from := net.UDPAddrFromAddrPort(s.from)
		c.free <- s
		return n, from, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo sends p to addr (a *net.UDPAddr) through the shared socket.
// IPv4-mapped IPv6 addresses are unmapped so they use the IPv4 socket.
func (c *STUNConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.InvalidAddrError("not a UDP address")}
	}
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	if err := c.bind.sendTo(p, ua.AddrPort()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close stops ReadFrom; the shared socket stays open.
func (c *STUNConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return nil
}

// LocalAddr is the address given at creation.
func (c *STUNConn) LocalAddr() net.Addr { return c.local }

// Deadlines are not supported; pion's mux does not need them.
func (c *STUNConn) SetDeadline(time.Time) error      { return nil }
func (c *STUNConn) SetReadDeadline(time.Time) error  { return nil }
func (c *STUNConn) SetWriteDeadline(time.Time) error { return nil }
