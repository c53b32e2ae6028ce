// Package netstack is a userspace Tun on gVisor's netstack, for running a
// gozone client without root: the packets connlib would write to a kernel
// TUN are fed into an in-process TCP/IP stack, and programs reach the tunnel
// through the Device's DialContext, ListenTCP and ListenUDP instead of the
// operating system's sockets.
//
// The stack owns the configured addresses and routes everything else to the
// device: what its sockets send comes out of PollRecvMany, and what is given
// to Send is delivered to its sockets. A device made with NewForwarding
// also accepts connections to other addresses and forwards them to real
// sockets on the host (a userspace gateway, see ForwardConfig).
//
// It is built on gVisor directly rather than on wireguard-go's tun/netstack,
// which reads one packet per call, hands packets over an unbuffered channel
// and can panic when Close races a write from the stack.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/gozone/gozone/tun"
)

// Config configures New. Zero values mean the defaults.
type Config struct {
	// Addrs are the stack's own addresses (at least one). Each family with
	// an address gets a default route into the device.
	Addrs []netip.Addr
	// DNS are the resolvers LookupHost and DialContext (for host names)
	// query, through the tunnel.
	DNS []netip.Addr
	// MTU is the largest packet; default 1280.
	MTU int
	// BatchSize is the most packets one PollRecvMany returns; default and
	// maximum tun.MaxBatch.
	BatchSize int
	// QueueDepth is how many packets the stack may have waiting for
	// PollRecvMany before it drops (TCP then retransmits); default 1024.
	QueueDepth int
	// Name is what Name returns; default "netstack".
	Name string
}

const (
	nicID             = 1
	defaultMTU        = 1280
	defaultQueueDepth = 1024
	// socketBufferSize is the default receive and send buffer of the
	// stack's sockets, large enough for a few batches of MTU-sized UDP
	// datagrams (gVisor's own default, 212 KiB, drops them).
	socketBufferSize = 4 << 20
)

// Errors returned by New and the dial functions.
var (
	ErrNoAddrs    = errors.New("netstack: no addresses configured")
	ErrNoDNS      = errors.New("netstack: no DNS servers configured")
	ErrNoFamily   = errors.New("netstack: no local address of the needed family")
	ErrBadNetwork = errors.New("netstack: unsupported network")
)

// Stats counts what happened at the device boundary.
type Stats struct {
	Sent, SentBytes         uint64 // packets given to Send and delivered to the stack
	Received, ReceivedBytes uint64 // packets PollRecvMany returned
	DroppedOversize         uint64 // Send of a packet larger than MTU
	DroppedMalformed        uint64 // Send of an empty, short or non-IP packet
	DroppedTooSmall         uint64 // packets that did not fit the PollRecvMany buffer
}

// Device is a userspace Tun backed by a gVisor network stack. It satisfies
// connlib.Tun; all methods are safe for concurrent use. It never applies
// backpressure on Send (the stack takes every packet at once), so SendReady
// returns nil at once while open.
type Device struct {
	stack *stack.Stack
	ep    *channel.Endpoint
	name  string
	mtu   int
	batch int
	// conf holds the addresses and DNS servers; replaced as a whole by
	// SetAddrs and SetDNS (forward_addrs.go), read without locks.
	conf atomic.Pointer[devConf]
	// fwd is non-nil on a forwarding device (NewForwarding).
	fwd *forwarder

	notify chan struct{} // token: the stack queued a packet

	// mu is held shared by Send while it injects into the stack and
	// exclusively by Close while it tears the stack down.
	mu        sync.RWMutex
	closed    chan struct{}
	isClosed  atomic.Bool
	closeOnce sync.Once

	sent, sentBytes, received, receivedBytes  atomic.Uint64
	dropOversize, dropMalformed, dropTooSmall atomic.Uint64
}

// devConf is the device's current addressing.
type devConf struct {
	addrs  []netip.Addr
	dns    []netip.Addr
	v4, v6 netip.Addr // first local address per family, invalid if none
}

// New creates a stack with cfg's addresses and returns its device.
func New(cfg Config) (*Device, error) {
	if len(cfg.Addrs) == 0 {
		return nil, ErrNoAddrs
	}
	return newDevice(cfg, nil)
}

// newDevice builds the stack; cfg.Addrs may be empty (SetAddrs adds them
// later). fwd, when set, is installed before the NIC exists.
func newDevice(cfg Config, fwd *forwarder) (*Device, error) {
	d := &Device{
		name:   cfg.Name,
		mtu:    cfg.MTU,
		batch:  cfg.BatchSize,
		fwd:    fwd,
		notify: make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	d.conf.Store(&devConf{dns: append([]netip.Addr(nil), cfg.DNS...)})
	if d.name == "" {
		d.name = "netstack"
	}
	if d.mtu <= 0 {
		d.mtu = defaultMTU
	}
	if d.batch <= 0 || d.batch > tun.MaxBatch {
		d.batch = tun.MaxBatch
	}
	depth := cfg.QueueDepth
	if depth <= 0 {
		depth = defaultQueueDepth
	}

	d.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// A forwarding stack is promiscuous: with HandleLocal every source
		// address would count as its own and be dropped as a martian.
		HandleLocal: fwd == nil,
	})
	fail := func(what string, err tcpip.Error) (*Device, error) {
		d.stack.Destroy()
		return nil, fmt.Errorf("netstack: %s: %s", what, err)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := d.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fail("enable TCP SACK", err)
	}
	if err := d.stack.SetOption(tcpip.ReceiveBufferSizeOption{Min: stack.MinBufferSize, Default: socketBufferSize, Max: 2 * socketBufferSize}); err != nil {
		return fail("receive buffer size", err)
	}
	if err := d.stack.SetOption(tcpip.SendBufferSizeOption{Min: stack.MinBufferSize, Default: socketBufferSize, Max: 2 * socketBufferSize}); err != nil {
		return fail("send buffer size", err)
	}
	d.ep = channel.New(depth, uint32(d.mtu), "")
	d.ep.AddNotify(d)
	if err := d.stack.CreateNIC(nicID, d.ep); err != nil {
		return fail("create NIC", err)
	}
	if fwd != nil {
		if err := fwd.install(d); err != nil {
			return fail("forwarding", err)
		}
	}
	if err := d.SetAddrs(cfg.Addrs); err != nil {
		d.stack.Destroy()
		return nil, err
	}
	return d, nil
}

// WriteNotify implements channel.Notification: the stack queued a packet
// for PollRecvMany. It must not block; it only drops a wake-up token.
func (d *Device) WriteNotify() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// PollRecvMany implements connlib.Tun: it returns packets the stack sent.
// With no bufs it returns 0, nil.
func (d *Device) PollRecvMany(ctx context.Context, bufs [][]byte, sizes []int, offset int) (int, error) {
	limit := min(len(bufs), len(sizes), d.batch)
	if limit == 0 {
		if d.isClosed.Load() {
			return 0, tun.ErrClosed
		}
		return 0, nil
	}
	for {
		if d.isClosed.Load() {
			return 0, tun.ErrClosed
		}
		n, bytes := 0, 0
		for n < limit {
			pkt := d.ep.Read()
			if pkt == nil {
				break
			}
			size := pkt.Size()
			dst := bufs[n]
			if offset < 0 || offset > len(dst) || len(dst)-offset < size {
				pkt.DecRef()
				d.dropTooSmall.Add(1)
				continue
			}
			sizes[n] = copyPacket(dst[offset:], pkt)
			pkt.DecRef()
			bytes += sizes[n]
			n++
		}
		if n > 0 {
			if d.ep.NumQueued() > 0 {
				d.WriteNotify() // pass the wake-up on to another reader
			}
			d.received.Add(uint64(n))
			d.receivedBytes.Add(uint64(bytes))
			return n, nil
		}
		select {
		case <-d.notify:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-d.closed:
			return 0, tun.ErrClosed
		}
	}
}

// copyPacket copies pkt's bytes (headers and payload) into dst without
// allocating, and returns how many it copied.
func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	views, skip := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		n += copy(dst[n:], s[skip:])
		skip = 0
	}
	return n
}

// SendReady implements connlib.Tun. The stack takes every packet at once,
// so it only reports ctx and Close.
func (d *Device) SendReady(ctx context.Context) error {
	if d.isClosed.Load() {
		return tun.ErrClosed
	}
	return ctx.Err()
}

// Send implements connlib.Tun: it delivers packets to the stack. Empty,
// non-IP and oversize packets are dropped and counted.
func (d *Device) Send(bufs [][]byte, offset int) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.isClosed.Load() {
		return 0, tun.ErrClosed
	}
	accepted, bytes := 0, 0
	for _, b := range bufs {
		if offset < 0 || offset >= len(b) {
			d.dropMalformed.Add(1)
			continue
		}
		pkt := b[offset:]
		var proto tcpip.NetworkProtocolNumber
		switch pkt[0] >> 4 {
		case 4:
			if len(pkt) < header.IPv4MinimumSize {
				d.dropMalformed.Add(1)
				continue
			}
			proto = header.IPv4ProtocolNumber
		case 6:
			if len(pkt) < header.IPv6MinimumSize {
				d.dropMalformed.Add(1)
				continue
			}
			proto = header.IPv6ProtocolNumber
		default:
			d.dropMalformed.Add(1)
			continue
		}
		if len(pkt) > d.mtu {
			d.dropOversize.Add(1)
			continue
		}
		if d.fwd != nil && d.fwd.intercept(pkt) {
			accepted++ // an ICMP echo the forwarder answers from the host
			bytes += len(pkt)
			continue
		}
		// gVisor owns what it is given, so the packet is copied here; the
		// caller may reuse bufs as soon as Send returns.
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		d.ep.InjectInbound(proto, pb)
		pb.DecRef()
		accepted++
		bytes += len(pkt)
	}
	d.sent.Add(uint64(accepted))
	d.sentBytes.Add(uint64(bytes))
	return accepted, nil
}

// BatchSize implements connlib.Tun.
func (d *Device) BatchSize() int { return d.batch }

// MTU implements connlib.Tun.
func (d *Device) MTU() int { return d.mtu }

// Name implements connlib.Tun.
func (d *Device) Name() string { return d.name }

// Close implements connlib.Tun: it unblocks pending calls, aborts every
// socket of the stack (their blocked reads and writes return errors) and
// tears the stack down. Later calls return nil.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.isClosed.Store(true)
		close(d.closed)
		d.mu.Lock() // wait for Sends in flight
		d.stack.Destroy()
		d.ep.Close()
		d.mu.Unlock()
		if d.fwd != nil {
			// Real sockets, then wait for the forwarding goroutines
			// (outside mu: an echo reply in flight takes it shared).
			d.fwd.close()
		}
	})
	return nil
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	return Stats{
		Sent:             d.sent.Load(),
		SentBytes:        d.sentBytes.Load(),
		Received:         d.received.Load(),
		ReceivedBytes:    d.receivedBytes.Load(),
		DroppedOversize:  d.dropOversize.Load(),
		DroppedMalformed: d.dropMalformed.Load(),
		DroppedTooSmall:  d.dropTooSmall.Load(),
	}
}
