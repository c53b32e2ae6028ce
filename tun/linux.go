//go:build linux

package tun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// Errors of the Linux device.
var (
	// ErrDeviceExists is returned by CreateLinux when an interface with the
	// requested name already exists. gozone never attaches to a device it
	// did not create: with IFF_MULTI_QUEUE a second process attaching would
	// silently split the traffic between two processes.
	ErrDeviceExists = errors.New("tun: device already exists")
)

// Defaults of LinuxConfig.
const (
	DefaultMTU        = 1280
	DefaultTxQueueLen = 10000 // Firezone's value; the kernel default of 500 drops under load
	maxQueues         = 16
	// linuxBatch is the batch size in both directions.
	linuxBatch = MaxBatch
	// batchesPerQueue is how many read batches one queue can have in flight
	// (being filled, waiting in the ready channel, being consumed). Two lets
	// the reader fill one while the consumer drains the other.
	batchesPerQueue = 2
	// maxConcurrentSends is how many Send calls can run at once without
	// allocating scratch space.
	maxConcurrentSends = 8
)

// LinuxConfig configures CreateLinux. The zero value of every field but Name
// means its default.
type LinuxConfig struct {
	// Name of the interface to create, at most 15 bytes. It must not exist.
	Name string
	// Queues is the number of TUN queues (IFF_MULTI_QUEUE when > 1), each
	// with its own reader goroutine. Default 1, at most 16.
	Queues int
	// MTU of the interface; default 1280.
	MTU int
	// TxQueueLen of the interface; default 10000.
	TxQueueLen int
	// DisableOffloads opens the device without IFF_VNET_HDR: no TSO/USO
	// super packets from the kernel and no coalesced writes. Every read and
	// write syscall then carries one packet (batches still form when several
	// packets are waiting). For kernels with broken offloads.
	DisableOffloads bool
	// Addrs are assigned to the interface (e.g. 100.64.0.1/32,
	// fd00:2021:1111::1/128). IPv6 addresses skip duplicate address
	// detection; IPv6 link-local addresses are not generated.
	Addrs []netip.Prefix
	// Routes are installed pointing at the interface (main table,
	// link scope). More can be added and removed with AddRoute/RemoveRoute.
	Routes []netip.Prefix
}

func (c *LinuxConfig) setDefaults() error {
	if c.Name == "" || len(c.Name) > 15 {
		return fmt.Errorf("tun: interface name %q must be 1..15 bytes", c.Name)
	}
	if c.Queues == 0 {
		c.Queues = 1
	}
	if c.Queues < 1 || c.Queues > maxQueues {
		return fmt.Errorf("tun: %d queues, want 1..%d", c.Queues, maxQueues)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return fmt.Errorf("tun: MTU %d out of range 576..65535", c.MTU)
	}
	if c.TxQueueLen == 0 {
		c.TxQueueLen = DefaultTxQueueLen
	}
	return nil
}

// LinuxStats are the device's counters since creation. Drops are never
// errors: the packet is gone, the counter says so.
type LinuxStats struct {
	RxPackets uint64 // packets handed to PollRecvMany callers
	RxBytes   uint64
	// RxTooBig counts packets that did not fit the buffer they were to be
	// read into (the caller's bufs[i][offset:], or the queue's MTU-sized
	// buffer when the interface MTU was raised behind our back).
	RxTooBig uint64
	// RxMalformed counts reads the kernel delivered that could not be
	// parsed: bad virtio-net header, unsupported GSO type, truncated or
	// oversized super packet, more segments than the batch has room for.
	RxMalformed uint64
	// RxReadErrors counts failed read syscalls (other than Close).
	RxReadErrors uint64
	// RxSuperPackets counts TSO/USO super packets the kernel handed us
	// (each split into several packets).
	RxSuperPackets uint64
	TxPackets      uint64 // packets the kernel accepted via Send
	TxBytes        uint64
	// TxDropped counts packets given to Send that were not written:
	// not an IPv4/IPv6 packet, or refused by the kernel.
	TxDropped uint64
	// RxQueues counts, per queue, the packets its reader got from the
	// kernel (before any RxTooBig drop in PollRecvMany).
	RxQueues []uint64
}

type linuxCounters struct {
	rxPackets, rxBytes, rxTooBig, rxMalformed, rxReadErrors atomic.Uint64
	rxSuper                                                 atomic.Uint64
	txPackets, txBytes, txDropped                           atomic.Uint64
}

// LinuxTun is a Linux kernel TUN device with one or more queues. It has the
// method set of connlib.Tun (see there for the full contract); all methods
// are safe for concurrent use.
//
// Reading: each queue has a reader goroutine that reads batches of up to
// 128 packets (TSO/USO super packets are split by wireguard-go's virtio
// code) into the queue's own buffers and hands full batches over a channel;
// PollRecvMany copies packets out of those batches into the caller's
// buffers. A queue's batches are delivered in the order they were read, so
// every flow the kernel keeps on one queue stays in order; with several
// queues a flow-hash eBPF steering program (linux_steering.go) makes the
// kernel keep every flow on one queue for good.
//
// Writing: Send groups the batch by FlowHash onto queues, keeping the order
// within each group, and writes each group on its queue with wireguard-go's
// coalescing writer (GRO into TSO/USO super packets); groups for different
// queues are written in parallel. Send returns when every packet has been
// written. A write to a TUN runs the packet through the kernel's receive
// path inside the write syscall and the kernel never queues it for us, so
// there is no "device full" state: SendReady only waits for nothing and
// reports Close or a done ctx. The time Send takes is the backpressure.
type LinuxTun struct {
	name     string
	mtu      int
	offloads bool
	steering bool // a flow-steering eBPF program picks read queues
	// noCoalesce is set when the kernel refused a coalesced write; from
	// then on every packet is written on its own.
	noCoalesce atomic.Bool
	log        *zap.Logger

	queues []*linuxQueue
	// ready carries filled batches from all queue readers to PollRecvMany.
	ready chan *rxBatch
	// recvTok is a one-token lock (a channel so waiting respects ctx and
	// Close) that serializes consumers of ready and guards cur.
	recvTok chan struct{}
	cur     *rxBatch

	scratch chan *sendScratch // free list of Send scratch space

	nlMu    sync.Mutex // serializes netlink use
	nl      *netlink.Handle
	ifindex int

	closed    chan struct{}
	closeOnce sync.Once
	readers   sync.WaitGroup
	stats     linuxCounters
}

// Name is the interface name.
func (t *LinuxTun) Name() string { return t.name }

// MTU is the interface MTU set at creation.
func (t *LinuxTun) MTU() int { return t.mtu }

// BatchSize is 128 in both directions, with or without offloads.
func (t *LinuxTun) BatchSize() int { return linuxBatch }

// Queues is the number of TUN queues.
func (t *LinuxTun) Queues() int { return len(t.queues) }

// Offloads reports whether the device uses a virtio-net header (TSO/USO).
func (t *LinuxTun) Offloads() bool { return t.offloads }

// Steering reports whether the kernel picks the read queue of every packet
// with gozone's flow-hash eBPF program (multi-queue devices), which keeps
// each flow on one queue for its lifetime.
func (t *LinuxTun) Steering() bool { return t.steering }

// Stats returns a snapshot of the counters.
func (t *LinuxTun) Stats() LinuxStats {
	s := &t.stats
	rxq := make([]uint64, len(t.queues))
	for i, q := range t.queues {
		rxq[i] = q.rxPackets.Load()
	}
	return LinuxStats{
		RxPackets: s.rxPackets.Load(), RxBytes: s.rxBytes.Load(), RxTooBig: s.rxTooBig.Load(),
		RxMalformed: s.rxMalformed.Load(), RxReadErrors: s.rxReadErrors.Load(), RxSuperPackets: s.rxSuper.Load(),
		TxPackets: s.txPackets.Load(), TxBytes: s.txBytes.Load(), TxDropped: s.txDropped.Load(),
		RxQueues: rxq,
	}
}

func (t *LinuxTun) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// PollRecvMany implements connlib.Tun: it blocks until at least one packet
// was read from any queue, then copies up to len(bufs) packets (from as many
// ready batches as are waiting) into bufs[i][offset:].
func (t *LinuxTun) PollRecvMany(ctx context.Context, bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.isClosed() {
		return 0, ErrClosed
	}
	select {
	case t.recvTok <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.closed:
		return 0, ErrClosed
	}
	defer func() { <-t.recvTok }()

	if len(sizes) < len(bufs) {
		bufs = bufs[:len(sizes)] // a caller error; never index past sizes
	}
	n := 0
	for n < len(bufs) {
		b := t.cur
		if b == nil {
			if n == 0 {
				select {
				case b = <-t.ready:
				case <-ctx.Done():
					return 0, ctx.Err()
				case <-t.closed:
					return 0, ErrClosed
				}
			} else {
				select {
				case b = <-t.ready:
				default:
					return n, nil
				}
			}
			t.cur = b
		}
		var got, bytes uint64
		for b.next < b.n && n < len(bufs) {
			pkt := b.bufs[b.next][:b.sizes[b.next]]
			b.next++
			if offset < 0 || offset > len(bufs[n]) || len(pkt) > len(bufs[n])-offset {
				t.stats.rxTooBig.Add(1)
				continue
			}
			sizes[n] = copy(bufs[n][offset:], pkt)
			bytes += uint64(len(pkt))
			got++
			n++
		}
		t.stats.rxPackets.Add(got)
		t.stats.rxBytes.Add(bytes)
		if b.next == b.n {
			t.cur = nil
			b.q.free <- b // never blocks: free has room for all of q's batches
		}
	}
	return n, nil
}
