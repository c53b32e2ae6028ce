package netstack

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// ForwardConfig turns a Device into the data plane of a userspace gateway:
// the stack accepts TCP connections and UDP flows to any address (not only
// its own), and for each one opens a real socket on the host to that
// destination and copies bytes both ways. ICMP echo requests to other
// addresses are sent as real pings from the host. Nothing here checks
// access: the gateway session filters every packet before it reaches the
// device (Send), exactly as in kernel mode, and only lets replies of flows
// it tracks leave it.
//
// Zero values mean the defaults.
type ForwardConfig struct {
	// Dial opens the real socket of a forwarded TCP connection or UDP flow
	// ("tcp" or "udp"); nil: a net.Dialer. Tests and embedders may route
	// through something else.
	Dial func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
	// Redirect maps the destination a client asked for to the address
	// dialled on the host (the port is kept); nil: unchanged. gVisor drops
	// loopback destinations arriving from outside, so a resource on the
	// gateway's own loopback (the quickstart, tests) is published under a
	// normal address and redirected here, e.g. 10.99.0.0/24 → 127.0.0.1.
	Redirect func(netip.Addr) netip.Addr
	// DialTimeout bounds connecting to a TCP destination; the client's SYN
	// is answered (SYN-ACK or RST) only then. Default 10 s.
	DialTimeout time.Duration
	// MaxPendingTCP bounds connections being dialled at once (more SYNs
	// are ignored; the client retransmits). Default 1024.
	MaxPendingTCP int
	// MaxUDPFlows bounds concurrent UDP flows (more are dropped). Default
	// 4096.
	MaxUDPFlows int
	// UDPIdleTimeout closes a UDP flow without packets in either direction
	// for this long. Default 120 s (the gateway NAT's UDP timeout).
	UDPIdleTimeout time.Duration
	// EchoTimeout bounds waiting for the host's echo reply. Default 5 s.
	EchoTimeout time.Duration
	// MaxPendingEcho bounds echo requests in flight. Default 64.
	MaxPendingEcho int
	// Logger; nil means no logging.
	Logger *zap.Logger
}

// ForwardStats counts what the forwarder did.
type ForwardStats struct {
	TCPForwarded uint64 // connections dialled and accepted
	TCPRefused   uint64 // the dial failed: the client got a RST
	TCPActive    int64  // connections open now
	UDPFlows     uint64 // flows opened
	UDPActive    int64  // flows open now
	UDPDropped   uint64 // flows refused (limit, dial failure, closing)
	ToSelf       uint64 // TCP/UDP to the stack's own addresses without a listener
	BadDest      uint64 // refused: a destination the host would take as itself or no unicast address
	EchoSent     uint64 // echo requests sent from the host
	EchoReplies  uint64 // echo replies handed back to the client
	EchoDropped  uint64 // no ping socket available, limit, timeout or malformed
}

// NewForwarding creates a forwarding Device (see ForwardConfig). Its own
// addresses, cfg.Addrs, may be empty and set later with SetAddrs: a
// gateway learns its tunnel addresses from the portal. Local sockets
// (ListenUDP on an own address, e.g. the gateway's DNS server) take
// precedence over forwarding.
func NewForwarding(cfg Config, fwd ForwardConfig) (*Device, error) {
	if fwd.Dial == nil {
		var d net.Dialer
		fwd.Dial = func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, network, addr.String())
		}
	}
	if fwd.Redirect == nil {
		fwd.Redirect = func(a netip.Addr) netip.Addr { return a }
	}
	if fwd.DialTimeout <= 0 {
		fwd.DialTimeout = 10 * time.Second
	}
	if fwd.MaxPendingTCP <= 0 {
		fwd.MaxPendingTCP = 1024
	}
	if fwd.MaxUDPFlows <= 0 {
		fwd.MaxUDPFlows = 4096
	}
	if fwd.UDPIdleTimeout <= 0 {
		fwd.UDPIdleTimeout = 120 * time.Second
	}
	if fwd.EchoTimeout <= 0 {
		fwd.EchoTimeout = 5 * time.Second
	}
	if fwd.MaxPendingEcho <= 0 {
		fwd.MaxPendingEcho = 64
	}
	if fwd.Logger == nil {
		fwd.Logger = zap.NewNop()
	}
	f := &forwarder{cfg: fwd, log: fwd.Logger, conns: make(map[io.Closer]struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.echoSem = make(chan struct{}, fwd.MaxPendingEcho)
	return newDevice(cfg, f)
}

// forwarder holds the forwarding state of one Device.
//
// Concurrency: gVisor calls the TCP handler on a goroutine per SYN and the
// UDP handler on the goroutine that called Send; intercept runs inside
// Send. Every goroutine the forwarder starts is counted in wg (under mu,
// so none starts after close), and every real socket is in conns so close
// can unblock them.
type forwarder struct {
	cfg ForwardConfig
	log *zap.Logger
	dev *Device

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	conns   map[io.Closer]struct{}
	wg      sync.WaitGroup
	echoSem chan struct{}

	echoWarned atomic.Bool

	tcpForwarded, tcpRefused, udpFlows, udpDropped, toSelf atomic.Uint64
	badDest                                                atomic.Uint64
	tcpActive, udpActive                                   atomic.Int64
	echoSent, echoReplies, echoDropped                     atomic.Uint64
}

// install puts the forwarder's handlers on d's stack (before addresses
// exist, right after the NIC is created).
func (f *forwarder) install(d *Device) tcpip.Error {
	f.dev = d
	if err := d.stack.SetPromiscuousMode(nicID, true); err != nil {
		return err
	}
	if err := d.stack.SetSpoofing(nicID, true); err != nil {
		return err
	}
	tf := tcp.NewForwarder(d.stack, 0, f.cfg.MaxPendingTCP, f.handleTCP)
	d.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(d.stack, f.handleUDP)
	d.stack.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	return nil
}

// start registers a goroutine (and, when c is not nil, a real socket) the
// forwarder must wait for; false once the device is closing.
func (f *forwarder) start(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	if c != nil {
		f.conns[c] = struct{}{}
	}
	return true
}

// done undoes start.
func (f *forwarder) done(c io.Closer) {
	if c != nil {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}
	f.wg.Done()
}

// track adds a real socket opened after start.
func (f *forwarder) track(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c io.Closer) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// close stops forwarding: it closes every real socket and waits for the
// forwarding goroutines. The stack is already destroyed, so the stack
// side of every connection has failed too.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	f.cancel()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// ForwardStats returns the forwarder's counters (zero for a device made
// without NewForwarding).
func (d *Device) ForwardStats() ForwardStats {
	f := d.fwd
	if f == nil {
		return ForwardStats{}
	}
	return ForwardStats{
		TCPForwarded: f.tcpForwarded.Load(),
		TCPRefused:   f.tcpRefused.Load(),
		TCPActive:    f.tcpActive.Load(),
		UDPFlows:     f.udpFlows.Load(),
		UDPActive:    f.udpActive.Load(),
		UDPDropped:   f.udpDropped.Load(),
		ToSelf:       f.toSelf.Load(),
		BadDest:      f.badDest.Load(),
		EchoSent:     f.echoSent.Load(),
		EchoReplies:  f.echoReplies.Load(),
		EchoDropped:  f.echoDropped.Load(),
	}
}

// badDestination reports whether a destination a client asked for must
// not be dialled from the host: a kernel gateway would never forward these
// (0.0.0.0/8 and :: mean "this host" to a socket, loopback is local,
// multicast and broadcast are no single resource, a v4-mapped IPv6
// address would reach IPv4 sockets behind the access check's back). Only
// the client's address is checked; Redirect's result is the operator's.
func badDestination(a netip.Addr) bool {
	if a.Is4In6() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
		return true
	}
	if a.Is4() {
		b := a.As4()
		return b[0] == 0 || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return false
}

// addrOf converts a gVisor address.
func addrOf(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}
