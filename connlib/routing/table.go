// Package routing is the client's routing table of resources: which
// resource a packet leaving the client's TUN device belongs to, and which
// prefixes the OS must route into the TUN device.
//
// Entries and priority (longest prefix match; at equal prefix length the
// earlier kind in this list wins):
//
//  1. CIDR resources (an IP resource is a /32 or /128). Equal prefixes of
//     different resources: the lowest resource ID wins, so the result does
//     not depend on the order of portal messages.
//  2. Host entries: DNS-resource proxy IPs (to the resource that owns
//     them) and device-pool peers' tunnel addresses (to the device-pool
//     resource; the session maps the address to the peer client).
//  3. The reserved ranges (tunnel, proxy, DNS sentinel): they match but
//     belong to no resource, so an unassigned proxy IP or a peer address
//     is never sent to a CIDR resource covering it or to the internet
//     resource.
//  4. The internet resource, when enabled, as 0.0.0.0/0 and ::/0: the
//     lowest priority, used only when nothing else matches.
//
// # Concurrency
//
// Tables are copy-on-write (as in Tailscale's hot configuration): every
// Update builds a new immutable snapshot and publishes it with one atomic
// pointer store. Lookup, LookupKind and Routes are lock-free, never block
// and never allocate (except Routes, which copies), and may run on any
// number of goroutines concurrently with Update. Updates are serialised
// by a mutex; a reader sees either the whole update or none of it.
package routing

import (
	"bytes"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gozone/gozone/connlib/prefixtable"
)

// ResourceID identifies a resource (a UUID's 16 bytes; a
// github.com/google/uuid UUID converts directly).
type ResourceID = [16]byte

// Kind says what kind of entry a lookup matched.
type Kind uint8

const (
	KindNone     Kind = iota // no match
	KindCIDR                 // a CIDR or IP resource
	KindDNS                  // a DNS-resource proxy IP
	KindReserved             // a reserved range address no resource owns
	KindInternet             // the internet resource
	KindDevice               // a device-pool peer's tunnel address
)

func (k Kind) String() string {
	switch k {
	case KindCIDR:
		return "cidr"
	case KindDNS:
		return "dns"
	case KindReserved:
		return "reserved"
	case KindInternet:
		return "internet"
	case KindDevice:
		return "device"
	}
	return "none"
}

// Table is the client's routing table. The zero value is not usable; call
// New.
type Table struct {
	mu   sync.Mutex // serialises writers; guards state
	st   state
	snap atomic.Pointer[snapshot]
}

// state is the mutable source of truth, kept by writers only.
type state struct {
	cidr     map[ResourceID]netip.Prefix
	hosts    map[netip.Addr]target // proxy IPs and device addresses
	internet ResourceID
	inetOn   bool
}

type target struct {
	id   ResourceID
	kind Kind
}

// snapshot is immutable once published.
type snapshot struct {
	tab     *prefixtable.Table
	targets []target // by prefixtable entry index
	routes  []netip.Prefix
}

// New returns an empty table: only the reserved ranges are routed.
func New() *Table {
	t := &Table{st: state{cidr: map[ResourceID]netip.Prefix{}, hosts: map[netip.Addr]target{}}}
	t.snap.Store(t.st.build())
	return t
}

// Lookup returns the resource dst belongs to. ok is false when dst
// matches no resource (including unassigned addresses in the reserved
// ranges). It never allocates.
func (t *Table) Lookup(dst netip.Addr) (id ResourceID, ok bool) {
	id, k := t.LookupKind(dst)
	return id, k != KindNone && k != KindReserved
}

// LookupKind is Lookup that also says what matched.
func (t *Table) LookupKind(dst netip.Addr) (ResourceID, Kind) {
	s := t.snap.Load()
	i := s.tab.Find(dst)
	if i == prefixtable.None {
		return ResourceID{}, KindNone
	}
	tg := s.targets[i]
	return tg.id, tg.kind
}

// Routes returns the prefixes the OS must route into the TUN device,
// sorted (IPv4 first) and unique: the reserved ranges, every CIDR
// resource, and the default routes while the internet resource is enabled.
// The slice is the caller's.
func (t *Table) Routes() []netip.Prefix {
	return slices.Clone(t.snap.Load().routes)
}

// Editor applies changes inside Update. It is valid only during the
// Update call that passed it.
type Editor struct{ st *state }

// SetCIDR adds or replaces the CIDR (or IP) resource id with prefix p.
// Invalid prefixes are ignored.
func (e *Editor) SetCIDR(id ResourceID, p netip.Prefix) {
	if p.IsValid() {
		e.st.cidr[id] = p.Masked()
	}
}

// SetProxyIP assigns proxy address a to DNS resource id (replacing any
// previous entry for a).
func (e *Editor) SetProxyIP(a netip.Addr, id ResourceID) { e.setHost(a, id, KindDNS) }

// RemoveProxyIP removes proxy address a.
func (e *Editor) RemoveProxyIP(a netip.Addr) { delete(e.st.hosts, a.Unmap()) }

// SetDeviceIP routes peer tunnel address a (inside the tunnel ranges) to
// device-pool resource id (replacing any previous entry for a).
func (e *Editor) SetDeviceIP(a netip.Addr, id ResourceID) { e.setHost(a, id, KindDevice) }

// RemoveDeviceIP removes device address a.
func (e *Editor) RemoveDeviceIP(a netip.Addr) { delete(e.st.hosts, a.Unmap()) }

func (e *Editor) setHost(a netip.Addr, id ResourceID, k Kind) {
	if a.IsValid() {
		e.st.hosts[a.Unmap()] = target{id, k}
	}
}

// SetInternet sets the internet resource's id and whether it is enabled
// (the user may switch it off).
func (e *Editor) SetInternet(id ResourceID, enabled bool) {
	e.st.internet, e.st.inetOn = id, enabled
}

// RemoveResource removes everything belonging to id: its CIDR entry, its
// proxy IPs or device addresses, and the internet resource if that is id.
func (e *Editor) RemoveResource(id ResourceID) {
	delete(e.st.cidr, id)
	for a, tg := range e.st.hosts {
		if tg.id == id {
			delete(e.st.hosts, a)
		}
	}
	if e.st.internet == id {
		e.st.internet, e.st.inetOn = ResourceID{}, false
	}
}

// Clear removes every resource (a full resync starts with it).
func (e *Editor) Clear() {
	clear(e.st.cidr)
	clear(e.st.hosts)
	e.st.internet, e.st.inetOn = ResourceID{}, false
}

// Update runs fn with an Editor, then publishes the new table atomically
// and returns how the set of routes changed (for the OS layer to apply).
// fn must not call methods of t.
func (t *Table) Update(fn func(e *Editor)) (added, removed []netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fn(&Editor{st: &t.st})
	prev := t.snap.Load()
	next := t.st.build()
	t.snap.Store(next)
	return DiffRoutes(prev.routes, next.routes)
}

func (st *state) build() *snapshot {
	type ent struct {
		p netip.Prefix
		t target
	}
	var ents []ent
	for id, p := range st.cidr {
		ents = append(ents, ent{p, target{id, KindCIDR}})
	}
	// Lowest ID first among equal prefixes (prefixtable: first added wins).
	slices.SortFunc(ents, func(a, b ent) int {
		if c := comparePrefix(a.p, b.p); c != 0 {
			return c
		}
		return bytes.Compare(a.t.id[:], b.t.id[:])
	})
	for a, tg := range st.hosts {
		ents = append(ents, ent{netip.PrefixFrom(a, a.BitLen()), tg})
	}
	for _, p := range ReservedRanges() {
		ents = append(ents, ent{p, target{kind: KindReserved}})
	}
	if st.inetOn {
		ents = append(ents, ent{IPv4Default, target{st.internet, KindInternet}}, ent{IPv6Default, target{st.internet, KindInternet}})
	}
	s := &snapshot{targets: make([]target, len(ents))}
	ps := make([]netip.Prefix, len(ents))
	for i, e := range ents {
		ps[i], s.targets[i] = e.p, e.t
		// Host entries are normally covered by the reserved ranges; one
		// outside them still needs its own route.
		host := e.t.kind == KindDNS || e.t.kind == KindDevice
		if !host || !(IsProxyAddr(e.p.Addr()) || IsTunnelAddr(e.p.Addr())) {
			s.routes = append(s.routes, e.p)
		}
	}
	s.tab = prefixtable.New(ps)
	s.routes = normalizeRoutes(s.routes)
	return s
}
