package tun

import (
	"context"
	"sync"
	"sync/atomic"
)

// MemConfig configures NewMemPair. Zero values mean the defaults.
type MemConfig struct {
	// BatchSize is the most packets one PollRecvMany returns or one Send
	// accepts; default and maximum MaxBatch (128), like the Linux device.
	BatchSize int
	// MTU is the largest packet carried; default 1280. Larger packets given
	// to Send are dropped and counted.
	MTU int
	// QueueDepth is how many packets each direction buffers; default 1024,
	// and never less than BatchSize. Send on a full queue drops and counts;
	// SendReady waits until a whole batch fits.
	QueueDepth int
	// Name prefixes the two ends' names: Name+"-a" and Name+"-b"; default
	// "mem".
	Name string
}

const (
	defaultMemMTU   = 1280
	defaultMemDepth = 1024
)

// MemStats counts what happened on one end of a memory pair.
type MemStats struct {
	Sent          uint64 // packets accepted by Send on this end
	SentBytes     uint64
	Received      uint64 // packets returned by PollRecvMany on this end
	ReceivedBytes uint64

	DroppedFull       uint64 // Send while the queue to the peer was full
	DroppedOversize   uint64 // Send of a packet larger than MTU
	DroppedMalformed  uint64 // Send of an empty or non-IPv4/IPv6 packet, or offset beyond the buffer
	DroppedPeerClosed uint64 // Send after the other end was closed
	DroppedTooSmall   uint64 // packets that did not fit the PollRecvMany buffer
}

// MemTun is one end of an in-memory Tun pair: packets Sent on one end come
// out of PollRecvMany on the other, with the batch, MTU, ordering and
// backpressure semantics of the real devices. It satisfies connlib.Tun.
//
// Each direction is a bounded FIFO of preallocated MTU-sized slots: Send
// copies packets in, PollRecvMany copies them out, so the hot path never
// allocates and neither side keeps the caller's buffers. The FIFO keeps
// every packet's order, which is stronger than the per-flow order the
// contract requires. All methods are safe for concurrent use.
//
// Closing one end makes the other end's Sends drop (counted in
// DroppedPeerClosed) and its SendReady return nil at once; packets already
// queued towards the open end can still be read there.
type MemTun struct {
	name  string
	batch int
	mtu   int

	tx   *memQueue // what this end sends; the peer reads it
	rx   *memQueue // what this end reads; the peer sends it
	peer *MemTun

	closeOnce sync.Once
	closed    chan struct{}
	isClosed  atomic.Bool

	sent, sentBytes, received, receivedBytes atomic.Uint64
	dropFull, dropOversize, dropMalformed    atomic.Uint64
	dropPeerClosed, dropTooSmall             atomic.Uint64
}

// NewMemPair returns two connected ends of an in-memory Tun.
func NewMemPair(cfg MemConfig) (a, b *MemTun) {
	batch := cfg.BatchSize
	if batch <= 0 || batch > MaxBatch {
		batch = MaxBatch
	}
	mtu := cfg.MTU
	if mtu <= 0 {
		mtu = defaultMemMTU
	}
	depth := cfg.QueueDepth
	if depth <= 0 {
		depth = defaultMemDepth
	}
	depth = max(depth, batch)
	name := cfg.Name
	if name == "" {
		name = "mem"
	}
	ab, ba := newMemQueue(depth, mtu), newMemQueue(depth, mtu)
	a = &MemTun{name: name + "-a", batch: batch, mtu: mtu, tx: ab, rx: ba, closed: make(chan struct{})}
	b = &MemTun{name: name + "-b", batch: batch, mtu: mtu, tx: ba, rx: ab, closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

// PollRecvMany implements connlib.Tun. It reads at most BatchSize packets.
// With no bufs it returns 0, nil.
func (t *MemTun) PollRecvMany(ctx context.Context, bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(sizes), t.batch)
	if n == 0 {
		if t.isClosed.Load() {
			return 0, ErrClosed
		}
		return 0, nil
	}
	for {
		if t.isClosed.Load() {
			return 0, ErrClosed
		}
		got, bytes, tooSmall := t.rx.pop(bufs[:n], sizes, offset)
		if tooSmall > 0 {
			t.dropTooSmall.Add(uint64(tooSmall))
		}
		if got > 0 {
			t.received.Add(uint64(got))
			t.receivedBytes.Add(uint64(bytes))
			return got, nil
		}
		select {
		case <-t.rx.notEmpty:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.closed:
			return 0, ErrClosed
		}
	}
}

// SendReady implements connlib.Tun: it waits until BatchSize packets fit in
// the queue towards the peer. When the peer is closed it returns nil at
// once (Sends are then dropped; waiting would never end).
func (t *MemTun) SendReady(ctx context.Context) error {
	for {
		if t.isClosed.Load() {
			return ErrClosed
		}
		if t.peer.isClosed.Load() {
			return nil
		}
		if t.tx.room() >= t.batch {
			// Pass the wake-up on: other waiters may fit too.
			t.tx.signalNotFull()
			return nil
		}
		select {
		case <-t.tx.notFull:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.closed:
			return ErrClosed
		case <-t.peer.closed:
		}
	}
}

// Send implements connlib.Tun. Packets beyond BatchSize in one call are
// handled like the rest (the queue bounds what is accepted).
func (t *MemTun) Send(bufs [][]byte, offset int) (int, error) {
	if t.isClosed.Load() {
		return 0, ErrClosed
	}
	if t.peer.isClosed.Load() {
		t.dropPeerClosed.Add(uint64(len(bufs)))
		return 0, nil
	}
	var r memSendResult
	t.tx.push(bufs, offset, &r)
	t.sent.Add(uint64(r.accepted))
	t.sentBytes.Add(uint64(r.bytes))
	if r.full > 0 {
		t.dropFull.Add(uint64(r.full))
	}
	if r.oversize > 0 {
		t.dropOversize.Add(uint64(r.oversize))
	}
	if r.malformed > 0 {
		t.dropMalformed.Add(uint64(r.malformed))
	}
	return r.accepted, nil
}

// BatchSize implements connlib.Tun.
func (t *MemTun) BatchSize() int { return t.batch }

// MTU implements connlib.Tun.
func (t *MemTun) MTU() int { return t.mtu }

// Name implements connlib.Tun.
func (t *MemTun) Name() string { return t.name }

// Close implements connlib.Tun. It closes this end only.
func (t *MemTun) Close() error {
	t.closeOnce.Do(func() {
		t.isClosed.Store(true)
		close(t.closed)
	})
	return nil
}

// Peer returns the other end of the pair.
func (t *MemTun) Peer() *MemTun { return t.peer }

// Stats returns this end's counters.
func (t *MemTun) Stats() MemStats {
	return MemStats{
		Sent:              t.sent.Load(),
		SentBytes:         t.sentBytes.Load(),
		Received:          t.received.Load(),
		ReceivedBytes:     t.receivedBytes.Load(),
		DroppedFull:       t.dropFull.Load(),
		DroppedOversize:   t.dropOversize.Load(),
		DroppedMalformed:  t.dropMalformed.Load(),
		DroppedPeerClosed: t.dropPeerClosed.Load(),
		DroppedTooSmall:   t.dropTooSmall.Load(),
	}
}
