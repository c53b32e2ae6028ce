package dns

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// Errors of Pending.
var (
	// ErrUnknownResponse: no forwarded query matches the response (late,
	// duplicate, spoofed, from another server, or a different question).
	ErrUnknownResponse = errors.New("dns: response matches no pending query")
	// ErrTooManyPending: MaxPending queries are in flight (or no free ID is
	// left for that server); answer SERVFAIL or drop.
	ErrTooManyPending = errors.New("dns: too many pending queries")
)

// Defaults of PendingConfig.
const (
	DefaultForwardTimeout = 5 * time.Second
	DefaultMaxPending     = 4096
)

// PendingConfig configures a Pending. The zero value is usable.
type PendingConfig struct {
	Clock      Clock         // nil: SystemClock
	Timeout    time.Duration // 0: DefaultForwardTimeout
	MaxPending int           // 0: DefaultMaxPending
}

type pendingKey struct {
	server netip.AddrPort
	id     uint16
}

type pendingEntry[T any] struct {
	gen      uint32
	live     bool
	key      pendingKey
	origID   uint16
	flags    uint16
	deadline time.Time
	origin   T
	qlen     int
	question [maxWireName + 4]byte
}

type pendingOrder struct {
	idx      int32
	gen      uint32
	deadline time.Time
}

// Pending remembers queries the stub forwards (to an upstream resolver or a
// gateway) so their responses can be turned back into replies for the
// application. Each forwarded query gets a fresh random ID per server, which
// keeps concurrent applications that reuse IDs apart and makes off-path
// spoofing harder; the response is accepted only from the server the query
// went to, with the same question, and gets the application's ID back.
// T is the caller's handle for where the reply goes (e.g. the application's
// address and the sentinel it used, or a TCP connection). server names the
// path the query took: the resolver's or gateway's address, or for DoH any
// stable stand-in such as the sentinel address.
//
// Entries expire after Timeout on the injected clock; Expire hands each one
// back with a SERVFAIL reply for the application.
//
// A Pending is not safe for concurrent use; its owner's event loop calls it.
type Pending[T any] struct {
	clock   Clock
	timeout time.Duration
	max     int

	byKey   map[pendingKey]int32
	entries []pendingEntry[T]
	free    []int32
	order   []pendingOrder
	head    int

	reply [headerLen + maxWireName + 4]byte
}

// NewPending returns an empty Pending.
func NewPending[T any](cfg PendingConfig) *Pending[T] {
	p := &Pending[T]{
		clock:   clockOrSystem(cfg.Clock),
		timeout: cfg.Timeout,
		max:     cfg.MaxPending,
		byKey:   make(map[pendingKey]int32),
	}
	if p.timeout <= 0 {
		p.timeout = DefaultForwardTimeout
	}
	if p.max <= 0 {
		p.max = DefaultMaxPending
	}
	return p
}

// Len returns the number of queries in flight.
func (p *Pending[T]) Len() int { return len(p.byKey) }

// Track records query (one DNS message, no TCP framing) as sent to server on
// behalf of origin, and rewrites its ID in place: send the bytes after Track
// returns. The query must be a well-formed query with one question (which
// HandleQuery guarantees for what it tells you to forward).
func (p *Pending[T]) Track(query []byte, server netip.AddrPort, origin T) error {
	var scratch [maxWireName]byte
	q, err := parseQuery(query, &scratch)
	if err != nil {
		return err
	}
	if len(p.byKey) >= p.max {
		return ErrTooManyPending
	}
	key := pendingKey{server: server}
	found := false
	for range 32 {
		key.id = uint16(rand.Uint32())
		if _, busy := p.byKey[key]; !busy {
			found = true
			break
		}
	}
	if !found {
		return ErrTooManyPending
	}

	var idx int32
	if n := len(p.free); n > 0 {
		idx = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		p.entries = append(p.entries, pendingEntry[T]{})
		idx = int32(len(p.entries) - 1)
	}
	e := &p.entries[idx]
	e.gen++
	e.live = true
	e.key = key
	e.origID = q.id
	e.flags = q.flags
	e.deadline = p.clock.Now().Add(p.timeout)
	e.origin = origin
	e.qlen = copy(e.question[:], query[headerLen:q.qEnd])
	p.byKey[key] = idx
	p.pushOrder(pendingOrder{idx: idx, gen: e.gen, deadline: e.deadline})

	binary.BigEndian.PutUint16(query, key.id)
	return nil
}

// Match takes a response received from server, finds the query it answers,
// restores the application's ID in place and returns the origin. resp is
// then the reply to send to the application. A response that matches
// nothing yields ErrUnknownResponse (drop it; a later genuine one may still
// come).
func (p *Pending[T]) Match(resp []byte, server netip.AddrPort) (T, error) {
	var zero T
	if len(resp) < headerLen {
		return zero, ErrShortMessage
	}
	flags := binary.BigEndian.Uint16(resp[2:])
	if flags&flagQR == 0 {
		return zero, ErrNotQuery
	}
	key := pendingKey{server: server, id: binary.BigEndian.Uint16(resp)}
	idx, ok := p.byKey[key]
	if !ok {
		return zero, ErrUnknownResponse
	}
	e := &p.entries[idx]
	qd := binary.BigEndian.Uint16(resp[4:])
	switch {
	case qd == 1 && len(resp) >= headerLen+e.qlen && equalFold(resp[headerLen:headerLen+e.qlen], e.question[:e.qlen]):
	case qd == 0 && flags&0xf != mdns.RcodeSuccess:
		// Some servers drop the question from error responses.
	default:
		return zero, ErrUnknownResponse
	}
	origin := e.origin
	binary.BigEndian.PutUint16(resp, e.origID)
	p.release(idx)
	p.trimOrder()
	return origin, nil
}

// PollTimeout returns when Expire next has work, if anything is pending.
func (p *Pending[T]) PollTimeout() (time.Time, bool) {
	p.trimOrder()
	if p.head < len(p.order) {
		return p.order[p.head].deadline, true
	}
	return time.Time{}, false
}

// trimOrder drops answered or cancelled entries from the front of the
// expiry queue, so a steady answer-before-timeout flow keeps it short.
func (p *Pending[T]) trimOrder() {
	for p.head < len(p.order) {
		o := p.order[p.head]
		if e := &p.entries[o.idx]; e.live && e.gen == o.gen {
			return
		}
		p.popOrder()
	}
}

// Expire removes every query whose timeout has passed on the clock and
// calls fn for each with its origin and a SERVFAIL reply for the
// application. The reply buffer is reused after fn returns.
func (p *Pending[T]) Expire(fn func(origin T, servfail []byte)) {
	now := p.clock.Now()
	for p.head < len(p.order) {
		o := p.order[p.head]
		e := &p.entries[o.idx]
		if !e.live || e.gen != o.gen {
			p.popOrder()
			continue
		}
		if o.deadline.After(now) {
			return
		}
		p.popOrder()
		origin := e.origin
		reply := p.servfail(e)
		p.release(o.idx)
		if fn != nil {
			fn(origin, reply)
		}
	}
}

// CancelIf forgets every pending query whose origin satisfies pred (e.g. a
// closed TCP connection or a vanished gateway) and returns how many.
func (p *Pending[T]) CancelIf(pred func(origin T) bool) int {
	n := 0
	for _, idx := range p.byKey {
		if pred(p.entries[idx].origin) {
			p.release(idx)
			n++
		}
	}
	return n
}

func (p *Pending[T]) servfail(e *pendingEntry[T]) []byte {
	w := respWriter{buf: p.reply[:], ok: true}
	q := query{id: e.origID, flags: e.flags}
	w.header(&q, mdns.RcodeServerFailure, 1, 0, 0)
	w.bytes(e.question[:e.qlen])
	return w.buf[:w.n]
}

func (p *Pending[T]) release(idx int32) {
	e := &p.entries[idx]
	delete(p.byKey, e.key)
	var zero T
	e.origin = zero
	e.live = false
	p.free = append(p.free, idx)
}

func (p *Pending[T]) pushOrder(o pendingOrder) {
	// Reclaim the consumed front when it is the larger part, so the queue
	// stays proportional to what is in flight.
	if p.head > 64 && p.head*2 > len(p.order) {
		n := copy(p.order, p.order[p.head:])
		p.order = p.order[:n]
		p.head = 0
	}
	p.order = append(p.order, o)
}

func (p *Pending[T]) popOrder() {
	p.order[p.head] = pendingOrder{}
	p.head++
	if p.head == len(p.order) {
		p.order = p.order[:0]
		p.head = 0
	}
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
