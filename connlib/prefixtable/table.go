// Package prefixtable is an immutable longest-prefix-match table over IPv4
// and IPv6 prefixes, shared by the client's routing table (connlib/routing)
// and the gateway's access-control table (connlib/acl).
//
// # Design
//
// A Table is built once from a list of prefixes and never changes; callers
// that need updates rebuild it and publish the new one through an
// atomic.Pointer (copy-on-write). Building flattens the (possibly nested or
// duplicated) prefixes into a sorted array of disjoint address ranges, each
// tagged with the index of the most specific prefix covering it. A lookup is
// one binary search over a flat []uint32 (IPv4) or []uint128 (IPv6) array:
// O(log n) comparisons regardless of prefix lengths, no pointers to chase,
// no allocation, and the arrays are pointer-free so thousands of tables cost
// the garbage collector nothing to scan. A trie would allow cheaper
// incremental updates, but updates here are rare (portal events) while
// lookups happen per packet, and a rebuild of a few hundred prefixes takes
// microseconds.
//
// Every entry also records its parent: the next less specific entry that
// contains it. Walking Parent from the result of Find enumerates every
// prefix that contains an address, most specific first, which the ACL uses
// to apply "any covering resource that allows" semantics.
//
// Identical prefixes are allowed; among them the entry added first is
// treated as the more specific one (Find returns it, and its Parent is the
// next identical one).
package prefixtable

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
)

// None is the entry index Find and Parent return when there is no entry.
const None = -1

// Table is an immutable prefix table. The zero value is an empty table.
// All methods are safe for concurrent use; none allocates.
type Table struct {
	v4 rangesV4
	v6 rangesV6
	// prefixes and parents are indexed by entry index (insertion order).
	prefixes []netip.Prefix
	parents  []int32
}

// New builds a table from prefixes. Entry i of the table is prefixes[i]
// (masked). Invalid prefixes (the zero Prefix) and IPv4-mapped IPv6
// prefixes are kept as entries, so indices stay aligned with the input,
// but never match (unmap such prefixes before calling New if they should).
// Lookups ignore an address's zone. New does not retain prefixes.
func New(prefixes []netip.Prefix) *Table {
	t := &Table{
		prefixes: make([]netip.Prefix, len(prefixes)),
		parents:  make([]int32, len(prefixes)),
	}
	var v4, v6 []int32
	for i, p := range prefixes {
		t.parents[i] = None
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		t.prefixes[i] = p
		switch {
		case p.Addr().Is4():
			v4 = append(v4, int32(i))
		case p.Addr().Is4In6():
			// Never matches: lookups unmap 4in6 addresses first.
		default:
			v6 = append(v6, int32(i))
		}
	}
	t.v4 = buildRanges(t, v4, toU32)
	t.v6 = buildRanges(t, v6, toU128)
	return t
}

// Len returns the number of entries.
func (t *Table) Len() int { return len(t.prefixes) }

// Prefix returns entry i's (masked) prefix.
func (t *Table) Prefix(i int) netip.Prefix { return t.prefixes[i] }

// Parent returns the index of the most specific entry strictly less specific
// than entry i that contains it (or an identical prefix added after i), or
// None.
func (t *Table) Parent(i int) int { return int(t.parents[i]) }

// Find returns the index of the most specific entry containing addr, or
// None. IPv4-mapped IPv6 addresses are looked up as IPv4.
func (t *Table) Find(addr netip.Addr) int {
	if t == nil {
		return None
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return findV4(&t.v4, toU32(addr))
	}
	if addr.Is6() {
		return findV6(&t.v6, toU128(addr))
	}
	return None
}

// Contains reports whether some entry contains addr.
func (t *Table) Contains(addr netip.Addr) bool { return t.Find(addr) != None }

// uint128 is an IPv6 address as two big-endian halves.
type uint128 struct{ hi, lo uint64 }

func (a uint128) less(b uint128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func toU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func toU128(a netip.Addr) uint128 {
	b := a.As16()
	var u uint128
	for i := 0; i < 8; i++ {
		u.hi = u.hi<<8 | uint64(b[i])
		u.lo = u.lo<<8 | uint64(b[8+i])
	}
	return u
}

// key is the numeric form of an address family.
type key interface{ uint32 | uint128 }

// ops abstracts the arithmetic buildRanges needs over both key types.
type ops[K key] interface {
	less(a, b K) bool
	// last returns the last address of the prefix starting at first with
	// bits prefix bits.
	last(first K, bits int) K
	isMax(k K) bool
	next(k K) K
}

type ops32 struct{}

func (ops32) less(a, b uint32) bool { return a < b }
func (ops32) last(first uint32, bits int) uint32 {
	if bits == 0 {
		return math.MaxUint32
	}
	return first | (math.MaxUint32 >> bits)
}
func (ops32) isMax(k uint32) bool  { return k == math.MaxUint32 }
func (ops32) next(k uint32) uint32 { return k + 1 }

type ops128 struct{}

func (ops128) less(a, b uint128) bool { return a.less(b) }
func (ops128) last(first uint128, bits int) uint128 {
	switch {
	case bits == 0:
		return uint128{math.MaxUint64, math.MaxUint64}
	case bits < 64:
		return uint128{first.hi | math.MaxUint64>>bits, math.MaxUint64}
	case bits == 64:
		return uint128{first.hi, math.MaxUint64}
	default:
		return uint128{first.hi, first.lo | math.MaxUint64>>(bits-64)}
	}
}
func (ops128) isMax(k uint128) bool { return k.hi == math.MaxUint64 && k.lo == math.MaxUint64 }
func (ops128) next(k uint128) uint128 {
	if k.lo == math.MaxUint64 {
		return uint128{k.hi + 1, 0}
	}
	return uint128{k.hi, k.lo + 1}
}

// ranges is a sorted list of disjoint ranges: range i is
// [starts[i], starts[i+1]) and belongs to entry idx[i] (None for a gap).
// starts[0] is always the family's first address when non-empty.
type ranges[K key] struct {
	starts []K
	idx    []int32
}

type rangesV4 = ranges[uint32]
type rangesV6 = ranges[uint128]

// The two find functions are written out per key type (rather than
// generically) so that comparisons compile to plain integer compares.

func findV4(r *ranges[uint32], k uint32) int {
	// Largest i with starts[i] <= k. starts[0] is the minimum address, so
	// such an i exists whenever the table is non-empty.
	s := r.starts
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k < s[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 {
		return None
	}
	return int(r.idx[lo-1])
}

func findV6(r *ranges[uint128], k uint128) int {
	s := r.starts
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k.hi < s[m].hi || (k.hi == s[m].hi && k.lo < s[m].lo) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 {
		return None
	}
	return int(r.idx[lo-1])
}

func opsFor[K key]() ops[K] {
	var k K
	switch any(k).(type) {
	case uint32:
		return any(ops32{}).(ops[K])
	default:
		return any(ops128{}).(ops[K])
	}
}

// buildRanges flattens the entries with indices ids into disjoint ranges
// and fills t.parents for them.
func buildRanges[K key](t *Table, ids []int32, conv func(netip.Addr) K) ranges[K] {
	if len(ids) == 0 {
		return ranges[K]{}
	}
	o := opsFor[K]()
	type ent struct {
		first, last K
		bits        int
		id          int32
	}
	ents := make([]ent, len(ids))
	for i, id := range ids {
		p := t.prefixes[id]
		f := conv(p.Addr())
		ents[i] = ent{first: f, last: o.last(f, p.Bits()), bits: p.Bits(), id: id}
	}
	// Containers before contained: by first address, then shorter prefix,
	// then for identical prefixes the later-added first so that the
	// earliest-added ends innermost.
	slices.SortFunc(ents, func(a, b ent) int {
		if o.less(a.first, b.first) {
			return -1
		}
		if o.less(b.first, a.first) {
			return 1
		}
		if c := cmp.Compare(a.bits, b.bits); c != 0 {
			return c
		}
		return cmp.Compare(b.id, a.id)
	})

	var r ranges[K]
	var zero K
	emit := func(start K, id int32) {
		if n := len(r.starts); n > 0 && r.starts[n-1] == start {
			r.idx[n-1] = id // a later boundary at the same address wins
			return
		}
		if n := len(r.idx); n > 0 && r.idx[n-1] == id {
			return // same owner continues; no new boundary needed
		}
		r.starts = append(r.starts, start)
		r.idx = append(r.idx, id)
	}
	emit(zero, None)
	var stack []ent
	// pop closes every open entry that ends before addr (all when done is
	// true), emitting the range that resumes after each one.
	pop := func(before K, all bool) {
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if !all && !o.less(top.last, before) {
				return
			}
			stack = stack[:len(stack)-1]
			if o.isMax(top.last) {
				continue // nothing resumes after the last address
			}
			owner := int32(None)
			if len(stack) > 0 {
				owner = stack[len(stack)-1].id
			}
			emit(o.next(top.last), owner)
		}
	}
	for _, e := range ents {
		pop(e.first, false)
		if len(stack) > 0 {
			t.parents[e.id] = stack[len(stack)-1].id
		}
		emit(e.first, e.id)
		stack = append(stack, e)
	}
	pop(zero, true)
	return r
}
