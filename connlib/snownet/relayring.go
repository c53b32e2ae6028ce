package snownet

import (
	"net"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

const (
	relayRingSlots = 512
	relaySlotSize  = 2048 // WireGuard datagram for a 1280..1420 MTU plus headroom
)

type relaySlot struct {
	buf []byte
	n   int
	ep  *peerEndpoint
}

// relayRing carries WireGuard datagrams that arrived through relays (read
// from each relayed peer's ICE conn by one goroutine per peer) to a single
// batched ReceiveFunc. Slots are preallocated and recycled: no allocation
// per packet.
//
// Concurrency: push may be called by any number of readers; the
// ReceiveFunc is called by wireguard-go's single receive goroutine for it.
type relayRing struct {
	full chan *relaySlot
	free chan *relaySlot
}

func newRelayRing(slots, size int) *relayRing {
	r := &relayRing{full: make(chan *relaySlot, slots), free: make(chan *relaySlot, slots)}
	for i := 0; i < slots; i++ {
		r.free <- &relaySlot{buf: make([]byte, size)}
	}
	return r
}

// push copies p into a free slot, waiting for one (backpressure on the
// reader) unless stop is closed. Packets larger than a slot are dropped.
func (r *relayRing) push(p []byte, ep *peerEndpoint, stop <-chan struct{}) bool {
	var s *relaySlot
	select {
	case s = <-r.free:
	case <-stop:
		return false
	}
	if len(p) > len(s.buf) {
		r.free <- s
		return false
	}
	s.n = copy(s.buf, p)
	s.ep = ep
	r.full <- s // never blocks: there are as many places as slots
	return true
}

// receiveFunc returns a ReceiveFunc that blocks for the first relayed
// datagram, then drains whatever else is queued, up to len(bufs).
func (r *relayRing) receiveFunc(closed <-chan struct{}, counter *atomic.Uint64) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var s *relaySlot
		select {
		case s = <-r.full:
		case <-closed:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], s.buf[:s.n])
			eps[n] = s.ep
			s.ep = nil
			r.free <- s
			n++
			if n == len(bufs) {
				break
			}
			select {
			case s = <-r.full:
				continue
			default:
			}
			break
		}
		counter.Add(uint64(n))
		return n, nil
	}
}
