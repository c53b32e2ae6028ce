package tun

import "sync"

// memQueue is one direction of a memory pair: a bounded FIFO ring of
// preallocated MTU-sized slots.
//
// Concurrency: push and pop may be called from any number of goroutines;
// a mutex serialises them and each copies its whole batch while holding it,
// so one Send's packets stay contiguous and in order. Waiters block on the
// one-token channels notEmpty and notFull; a woken waiter that leaves work
// behind passes the token on, so no waiter sleeps while it could proceed.
type memQueue struct {
	mu    sync.Mutex
	slots [][]byte // len(slots) == depth, each cap == mtu, one backing array
	lens  []int
	head  int // index of the oldest packet
	count int // packets queued

	notEmpty chan struct{} // token: a pop may find packets
	notFull  chan struct{} // token: a push may find room
}

func newMemQueue(depth, mtu int) *memQueue {
	backing := make([]byte, depth*mtu)
	q := &memQueue{
		slots:    make([][]byte, depth),
		lens:     make([]int, depth),
		notEmpty: make(chan struct{}, 1),
		notFull:  make(chan struct{}, 1),
	}
	for i := range q.slots {
		q.slots[i] = backing[i*mtu : (i+1)*mtu : (i+1)*mtu]
	}
	return q
}

func (q *memQueue) signalNotEmpty() {
	select {
	case q.notEmpty <- struct{}{}:
	default:
	}
}

func (q *memQueue) signalNotFull() {
	select {
	case q.notFull <- struct{}{}:
	default:
	}
}

func (q *memQueue) room() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.slots) - q.count
}

type memSendResult struct {
	accepted, bytes, full, oversize, malformed int
}

// push copies bufs[i][offset:] into free slots, dropping (and counting in
// r) what is malformed, larger than a slot or finds the queue full.
func (q *memQueue) push(bufs [][]byte, offset int, r *memSendResult) {
	q.mu.Lock()
	depth := len(q.slots)
	for _, b := range bufs {
		if offset < 0 || offset >= len(b) {
			r.malformed++
			continue
		}
		pkt := b[offset:]
		if v := pkt[0] >> 4; v != 4 && v != 6 {
			r.malformed++
			continue
		}
		if q.count == depth {
			r.full++
			continue
		}
		i := (q.head + q.count) % depth
		slot := q.slots[i]
		if len(pkt) > cap(slot) {
			r.oversize++
			continue
		}
		q.lens[i] = copy(slot[:cap(slot)], pkt)
		q.count++
		r.accepted++
		r.bytes += len(pkt)
	}
	q.mu.Unlock()
	if r.accepted > 0 {
		q.signalNotEmpty()
	}
}

// pop moves up to len(bufs) packets into bufs[i][offset:], setting sizes.
// A packet that does not fit its buffer is dropped (never truncated) and
// the next packet tried in the same buffer.
func (q *memQueue) pop(bufs [][]byte, sizes []int, offset int) (n, bytes, tooSmall int) {
	q.mu.Lock()
	depth := len(q.slots)
	popped := 0
	for n < len(bufs) && q.count > 0 {
		slot := q.slots[q.head][:q.lens[q.head]]
		q.head = (q.head + 1) % depth
		q.count--
		popped++
		dst := bufs[n]
		if offset < 0 || offset > len(dst) || len(dst)-offset < len(slot) {
			tooSmall++
			continue
		}
		sizes[n] = copy(dst[offset:], slot)
		bytes += len(slot)
		n++
	}
	left := q.count
	q.mu.Unlock()
	if popped > 0 {
		q.signalNotFull()
	}
	if left > 0 {
		q.signalNotEmpty()
	}
	return n, bytes, tooSmall
}
