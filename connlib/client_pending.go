package connlib

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gozone/gozone/connlib/routing"
	"github.com/gozone/gozone/connlib/snownet"
)

// clientPending holds packets for targets that are not connected yet and
// throttles the authorization requests they trigger (reference §1.4: up to
// 128 packets per pending target, request_authorization at most once per
// 2 s per resource).
//
// Concurrency: all methods are safe for concurrent use; the packet path
// calls Add, the event loop the rest. One mutex guards everything: Add
// only runs for packets of targets that are not connected, which is the
// connection set-up path, not the steady-state data path.
type clientPending struct {
	clock    snownet.Clock
	max      int
	interval time.Duration

	mu      sync.Mutex
	queues  map[clientTarget]*clientQueue
	lastReq map[routing.ResourceID]time.Time
	free    [][]byte

	dropped atomic.Uint64 // packets dropped because a queue was full or expired
}

type clientQueue struct {
	pkts    [][]byte
	lastAdd time.Time
}

func newClientPending(clock snownet.Clock, max int, interval time.Duration) *clientPending {
	return &clientPending{
		clock: clock, max: max, interval: interval,
		queues:  make(map[clientTarget]*clientQueue),
		lastReq: make(map[routing.ResourceID]time.Time),
	}
}

// Add keeps a copy of pkt for target t (when the queue is full the oldest
// packet is dropped: the newest ones are the ones a sender still waits
// for) and reports whether an authorization request for t's resource is
// due now.
func (p *clientPending) Add(t clientTarget, pkt []byte) (request bool) {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[t]
	if q == nil {
		q = &clientQueue{}
		p.queues[t] = q
	}
	var b []byte
	if len(q.pkts) >= p.max {
		b = q.pkts[0]
		copy(q.pkts, q.pkts[1:])
		q.pkts = q.pkts[:len(q.pkts)-1]
		p.dropped.Add(1)
	} else if n := len(p.free); n > 0 {
		b = p.free[n-1]
		p.free = p.free[:n-1]
	}
	q.pkts = append(q.pkts, append(b[:0], pkt...))
	q.lastAdd = now
	last, ok := p.lastReq[t.rid]
	if ok && now.Sub(last) < p.interval {
		return false
	}
	p.lastReq[t.rid] = now
	return true
}

// Len returns how many packets wait for t.
func (p *clientPending) Len(t clientTarget) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q := p.queues[t]; q != nil {
		return len(q.pkts)
	}
	return 0
}

// Take removes and returns the packets waiting for t, oldest first. Give
// them back with Release once they are sent.
func (p *clientPending) Take(t clientTarget) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[t]
	if q == nil {
		return nil
	}
	delete(p.queues, t)
	return q.pkts
}

// TakeResource removes and returns the packets of every target of rid for
// which keep returns true (nil keep: all of them).
func (p *clientPending) TakeResource(rid routing.ResourceID, keep func(clientTarget) bool) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for t, q := range p.queues {
		if t.rid != rid || (keep != nil && !keep(t)) {
			continue
		}
		out = append(out, q.pkts...)
		delete(p.queues, t)
	}
	return out
}

// Targets returns the targets of rid that have packets waiting.
func (p *clientPending) Targets(rid routing.ResourceID) []clientTarget {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []clientTarget
	for t := range p.queues {
		if t.rid == rid {
			out = append(out, t)
		}
	}
	return out
}

// Resources returns the resources that have packets waiting.
func (p *clientPending) Resources() []routing.ResourceID {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[routing.ResourceID]bool)
	var out []routing.ResourceID
	for t := range p.queues {
		if !seen[t.rid] {
			seen[t.rid] = true
			out = append(out, t.rid)
		}
	}
	return out
}

// Release recycles packet buffers returned by Take.
func (p *clientPending) Release(pkts [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range pkts {
		if len(p.free) < 4*p.max {
			p.free = append(p.free, b[:0])
		}
	}
}

// AllowRequest lets the next packet for rid request authorization at once
// (e.g. after the connection to its gateway failed).
func (p *clientPending) AllowRequest(rid routing.ResourceID) {
	p.mu.Lock()
	delete(p.lastReq, rid)
	p.mu.Unlock()
}

// MarkRequested records that an authorization request for rid was just
// sent without a packet (an eager reconnection), so packets arriving
// meanwhile do not ask again within the interval.
func (p *clientPending) MarkRequested(rid routing.ResourceID) {
	now := p.clock.Now()
	p.mu.Lock()
	p.lastReq[rid] = now
	p.mu.Unlock()
}

// Expire drops queues nothing was added to for maxAge and forgets old
// request times, so targets that never connect do not hold memory.
func (p *clientPending) Expire(maxAge time.Duration) int {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for t, q := range p.queues {
		if now.Sub(q.lastAdd) >= maxAge {
			n += len(q.pkts)
			delete(p.queues, t)
		}
	}
	for rid, at := range p.lastReq {
		if now.Sub(at) >= maxAge {
			delete(p.lastReq, rid)
		}
	}
	p.dropped.Add(uint64(n))
	return n
}

// Dropped counts packets dropped from full or expired queues.
func (p *clientPending) Dropped() uint64 { return p.dropped.Load() }
