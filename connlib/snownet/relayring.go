package snownet

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

const (
	relayRingSlots = 512
	relaySlotSize  = 2048 // WireGuard datagram for a 1420-byte MTU plus headroom
)

type relaySlot struct {
	buf []byte
	n   int
	ep  *peerEndpoint
}

// relayRing carries WireGuard datagrams that arrived through relays (read
// from each relayed peer's ICE conn by one goroutine per peer) to a single
// ReceiveFunc that takes everything queued, up to a whole batch, under one
// lock acquisition and at most one wake-up: packets do not hop through a
// channel one by one. Slots are preallocated and reused, so nothing is
// allocated per packet.
//
// Concurrency: push may be called by any number of readers; the
// ReceiveFunc by wireguard-go's receive goroutine for it (one at a time).
type relayRing struct {
	mu    sync.Mutex
	slots []relaySlot
	head  int // oldest queued slot
	n     int // queued slots

	notEmpty chan struct{} // a token when data may be queued
	notFull  chan struct{} // a token when room may be available
}

func newRelayRing(slots, size int) *relayRing {
	r := &relayRing{
		slots:    make([]relaySlot, slots),
		notEmpty: make(chan struct{}, 1),
		notFull:  make(chan struct{}, 1),
	}
	for i := range r.slots {
		r.slots[i].buf = make([]byte, size)
	}
	return r
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push copies p into the ring, waiting for room (backpressure on the
// reader) unless stop is closed. Packets larger than a slot are refused.
func (r *relayRing) push(p []byte, ep *peerEndpoint, stop <-chan struct{}) bool {
	if len(p) > len(r.slots[0].buf) {
		return false
	}
	for {
		r.mu.Lock()
		if r.n < len(r.slots) {
			s := &r.slots[(r.head+r.n)%len(r.slots)]
			s.n = copy(s.buf, p)
			s.ep = ep
			r.n++
			room := r.n < len(r.slots)
			r.mu.Unlock()
			signal(r.notEmpty)
			if room {
				signal(r.notFull) // pass the token on to another waiting reader
			}
			return true
		}
		r.mu.Unlock()
		select {
		case <-r.notFull:
		case <-stop:
			return false
		}
	}
}

// receiveFunc returns a ReceiveFunc that blocks until something is queued
// (or closed is closed: net.ErrClosed), then returns up to len(bufs)
// datagrams at once.
func (r *relayRing) receiveFunc(closed <-chan struct{}, counter *atomic.Uint64) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			r.mu.Lock()
			if r.n > 0 {
				k := min(r.n, len(bufs))
				for i := 0; i < k; i++ {
					s := &r.slots[(r.head+i)%len(r.slots)]
					sizes[i] = copy(bufs[i], s.buf[:s.n])
					eps[i] = s.ep
					s.ep = nil
				}
				r.head = (r.head + k) % len(r.slots)
				r.n -= k
				more := r.n > 0
				r.mu.Unlock()
				signal(r.notFull)
				if more {
					signal(r.notEmpty)
				}
				counter.Add(uint64(k))
				return k, nil
			}
			r.mu.Unlock()
			select {
			case <-r.notEmpty:
			case <-closed:
				return 0, net.ErrClosed
			}
		}
	}
}
