package acl

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
)

// Tracker remembers flows that clients opened through the gateway so
// that only their replies pass back (resource → client). It is a bounded,
// set-associative flow cache: a tuple hashes (with a random seed) to one
// bucket of 8 slots; a new flow takes a free or expired slot, else evicts
// the slot closest to expiry in that bucket. Each bucket keeps a 32-bit
// tag per slot (the hash's upper half) in front, so a lookup compares
// full tuples only on a tag hit. With 8 ways, evictions stay negligible
// until the table is nearly full (at half load, a bucket overflows with
// probability ~1e-4). Memory is fixed at creation,
// every operation is O(1), and nothing allocates per packet.
//
// Timeouts follow Firezone's gateway NAT table: TCP 2 h 4 min, UDP and
// ICMP 120 s, and 60 s for a flow that has not seen a reply yet (so
// unanswered probes cannot hold slots for hours).
//
// Track with tuples as the packets appear where Tracker sits: if the
// caller rewrites addresses (DNS-resource NAT), track the translated
// outbound tuple and check replies before reverse translation, or
// consistently the other way round.
//
// All methods are safe for concurrent use; buckets are guarded by 256
// striped mutexes, so goroutines handling different flows rarely contend.
type Tracker struct {
	buckets []bucket
	mask    uint64
	seed    uint64
	locks   [256]paddedMutex
	cfg     TrackerConfig

	evictions atomic.Uint64
}

// TrackerConfig configures a Tracker; zero fields take the defaults.
type TrackerConfig struct {
	// Size is the number of flows the tracker can hold (rounded up to a
	// power of two, at least 64). Default 65536 (≈5 MiB).
	Size int
	// Timeouts for confirmed (answered) flows.
	TCPTimeout, UDPTimeout, ICMPTimeout, OtherTimeout time.Duration
	// UnconfirmedTimeout applies until the first reply.
	UnconfirmedTimeout time.Duration
}

const slotsPerBucket = 8

type slot struct {
	key       ippacket.FiveTuple
	expires   int64 // Unix ns; 0 = empty
	confirmed bool
}

type bucket struct {
	tags [slotsPerBucket]uint32 // hash>>32 of each slot's key, for a cheap first test
	s    [slotsPerBucket]slot
}

type paddedMutex struct {
	sync.Mutex
	_ [56]byte // one cache line each
}

// NewTracker returns an empty tracker.
func NewTracker(cfg TrackerConfig) *Tracker {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.TCPTimeout, 2*time.Hour+4*time.Minute)
	def(&cfg.UDPTimeout, 120*time.Second)
	def(&cfg.ICMPTimeout, 120*time.Second)
	def(&cfg.OtherTimeout, 120*time.Second)
	def(&cfg.UnconfirmedTimeout, 60*time.Second)
	if cfg.Size <= 0 {
		cfg.Size = 65536
	}
	n := 1
	for n*slotsPerBucket < max(cfg.Size, 64) {
		n <<= 1
	}
	var s [8]byte
	_, _ = rand.Read(s[:]) // never fails on supported platforms
	return &Tracker{
		buckets: make([]bucket, n),
		mask:    uint64(n - 1),
		seed:    binary.LittleEndian.Uint64(s[:]),
		cfg:     cfg,
	}
}

func (t *Tracker) timeout(proto uint8, confirmed bool) int64 {
	if !confirmed {
		return int64(t.cfg.UnconfirmedTimeout)
	}
	switch proto {
	case ippacket.ProtoTCP:
		return int64(t.cfg.TCPTimeout)
	case ippacket.ProtoUDP:
		return int64(t.cfg.UDPTimeout)
	case ippacket.ProtoICMP, ippacket.ProtoICMPv6:
		return int64(t.cfg.ICMPTimeout)
	}
	return int64(t.cfg.OtherTimeout)
}

func (t *Tracker) lock(key ippacket.FiveTuple) (*bucket, *paddedMutex, uint32) {
	h := key.Hash(t.seed)
	b := h & t.mask
	return &t.buckets[b], &t.locks[b&255], uint32(h >> 32)
}

// Track records (or refreshes) the flow of an outbound packet the ACL
// allowed.
func (t *Tracker) Track(p ippacket.Packet, now time.Time) { t.TrackTuple(p.Tuple(), now) }

// TrackTuple is Track for a tuple.
func (t *Tracker) TrackTuple(key ippacket.FiveTuple, now time.Time) {
	n := now.UnixNano()
	b, mu, tag := t.lock(key)
	mu.Lock()
	defer mu.Unlock()
	victim := -1
	for i := range b.s {
		s := &b.s[i]
		if b.tags[i] == tag && s.expires != 0 && s.key == key {
			if n >= s.expires {
				s.confirmed = false // expired: starts over
			}
			s.expires = n + t.timeout(key.Proto, s.confirmed)
			return
		}
		if victim < 0 || freeOrOlder(s, &b.s[victim], n) {
			victim = i
		}
	}
	v := &b.s[victim]
	if v.expires != 0 && n < v.expires {
		t.evictions.Add(1)
	}
	*v = slot{key: key, expires: n + t.timeout(key.Proto, false)}
	b.tags[victim] = tag
}

// freeOrOlder reports whether a is a better eviction victim than b.
func freeOrOlder(a, b *slot, now int64) bool {
	aFree := a.expires == 0 || now >= a.expires
	bFree := b.expires == 0 || now >= b.expires
	if aFree != bFree {
		return aFree
	}
	return !aFree && a.expires < b.expires
}

// AllowReply reports whether packet p, travelling from a resource towards
// a client, belongs to a tracked, unexpired flow (its reversed tuple was
// tracked), and refreshes that flow. ICMP errors always pass, as in
// Firezone's gateway: they are how path-MTU discovery and unreachable
// reports reach the client.
func (t *Tracker) AllowReply(p ippacket.Packet, now time.Time) bool {
	if p.IsICMPError() {
		return true
	}
	return t.AllowReplyTuple(p.Tuple(), now)
}

// AllowReplyTuple is AllowReply for the tuple of the reply.
func (t *Tracker) AllowReplyTuple(reply ippacket.FiveTuple, now time.Time) bool {
	key := reply.Reverse()
	n := now.UnixNano()
	b, mu, tag := t.lock(key)
	mu.Lock()
	defer mu.Unlock()
	for i := range b.s {
		s := &b.s[i]
		if b.tags[i] == tag && s.expires != 0 && s.key == key {
			if n >= s.expires {
				return false
			}
			s.confirmed = true
			s.expires = n + t.timeout(key.Proto, true)
			return true
		}
	}
	return false
}

// Forget drops the flow with outbound tuple key (for example when a
// client is removed).
func (t *Tracker) Forget(key ippacket.FiveTuple) {
	b, mu, tag := t.lock(key)
	mu.Lock()
	defer mu.Unlock()
	for i := range b.s {
		if b.tags[i] == tag && b.s[i].expires != 0 && b.s[i].key == key {
			b.s[i] = slot{}
		}
	}
}

// Evictions returns how many live flows were evicted to make room: if it
// grows, the tracker is too small for the load.
func (t *Tracker) Evictions() uint64 { return t.evictions.Load() }

// Capacity returns the number of flow slots.
func (t *Tracker) Capacity() int { return len(t.buckets) * slotsPerBucket }

// ForgetAddr drops every flow whose source (the client side) is a. It
// scans the whole table: meant for rare events such as a client leaving.
func (t *Tracker) ForgetAddr(a netip.Addr) {
	for bi := range t.buckets {
		mu := &t.locks[uint64(bi)&255]
		mu.Lock()
		for i := range t.buckets[bi].s {
			if s := &t.buckets[bi].s[i]; s.expires != 0 && s.key.Src == a {
				*s = slot{}
			}
		}
		mu.Unlock()
	}
}
