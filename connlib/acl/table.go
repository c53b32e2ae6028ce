// Package acl is the gateway's access-control table: which packets from a
// client may be forwarded to which resources, and (Tracker) which packets
// from resources may go back to clients.
//
// # Semantics (reference §1.4, §4.3, §6.1)
//
// A packet from client C passes when its source is C's tunnel address
// (IPv4 or IPv6) and some resource C holds an unexpired authorization for
// contains the destination and permits it by its filters. Resources may
// overlap (10.0.0.0/8 with TCP/22 and 10.1.0.0/16 with TCP/443): the
// packet passes if ANY covering resource permits it, which is what
// Firezone's gateway computes when it unions the filters of every resource
// whose network contains the matched one. Filters: an empty list permits
// everything; otherwise TCP/UDP destination-port ranges and an ICMP switch
// that allows every ICMP/ICMPv6 type. Other protocols and non-first
// fragments pass only a permit-all resource.
//
// Resource kinds: CIDR resources match their prefix; DNS resources match
// the proxy IPs this client assigned to them (SetProxyIPs, from the p2p
// assigned_ips message), so check the packet BEFORE the proxy-IP → real-IP
// NAT; the internet resource matches everything except
// IsForbiddenInternet destinations, at the lowest priority (a covering CIDR
// resource's filters are unioned with it, as for any overlap).
//
// # Structure
//
// Each client has an immutable snapshot: a prefixtable over the prefixes
// of its authorized resources plus a grant (expiry, compiled filters) per
// entry. A check is one binary search (O(log n) in that client's
// resources), then a walk up the chain of covering prefixes (usually 1-2
// steps). Per-client tables keep lookups independent of how many clients
// exist, keep a rebuild proportional to one client's resources, and need
// no per-packet client filtering.
//
// # Concurrency
//
// Check, Client and Client.Check are lock-free, never block, never
// allocate, and may be called from any number of goroutines concurrently
// with the writer methods. Writers (everything else) are serialised by a
// mutex; each publishes new immutable snapshots with atomic pointer
// stores (copy-on-write, as Tailscale does for hot configuration). A
// checker sees each client's state either before or after a write, never
// half of it. The client index is split in 64 copy-on-write shards so
// adding a client copies ~1/64 of the index.
package acl

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
)

// ClientID and ResourceID are UUIDs' 16 bytes (a github.com/google/uuid
// UUID converts directly).
type (
	ClientID   = [16]byte
	ResourceID = [16]byte
)

// ResourceKind is the type of a gateway resource.
type ResourceKind uint8

const (
	KindCIDR     ResourceKind = iota + 1 // address prefix (an IP resource is /32 or /128)
	KindDNS                              // reached through per-client proxy IPs
	KindInternet                         // 0.0.0.0/0 and ::/0 minus forbidden destinations
)

// Resource is a gateway resource as the portal describes it.
type Resource struct {
	ID      ResourceID
	Kind    ResourceKind
	Prefix  netip.Prefix // KindCIDR only
	Filters []Filter     // empty: everything allowed
}

// Authorization grants Client access to Resource until Expires (the zero
// Time: no expiry).
type Authorization struct {
	Client   ClientID
	Resource ResourceID
	Expires  time.Time
}

// Errors returned by the writer methods.
var (
	ErrUnknownClient   = errors.New("acl: unknown client")
	ErrUnknownResource = errors.New("acl: unknown resource")
	ErrInvalidResource = errors.New("acl: invalid resource")
)

const shardBits = 6

// Table is the gateway's access-control table. Create it with New.
type Table struct {
	mu        sync.Mutex // serialises writers; guards resources, clients
	resources map[ResourceID]*resourceState
	clients   map[ClientID]*clientState

	gw     atomic.Pointer[[2]netip.Addr]
	shards [1 << shardBits]atomic.Pointer[map[ClientID]*Client]
}

type resourceState struct {
	r       Resource
	filter  *filterSet
	holders map[ClientID]struct{}
}

type clientState struct {
	handle  *Client
	v4, v6  netip.Addr
	auths   map[ResourceID]int64 // expiry in Unix ns; 0 = never
	proxies map[ResourceID]map[string][]netip.Addr
}

// New returns an empty table.
func New() *Table {
	t := &Table{resources: map[ResourceID]*resourceState{}, clients: map[ClientID]*clientState{}}
	for i := range t.shards {
		m := map[ClientID]*Client{}
		t.shards[i].Store(&m)
	}
	return t
}

func shardOf(id ClientID) int {
	h := binary.LittleEndian.Uint64(id[:8]) ^ binary.LittleEndian.Uint64(id[8:])
	return int((h * 0x9e3779b97f4a7c15) >> (64 - shardBits))
}

// Client returns the handle of client id, or nil. A session may keep the
// handle per peer to skip the index lookup; after RemoveClient its checks
// return DropUnknownClient.
func (t *Table) Client(id ClientID) *Client {
	return (*t.shards[shardOf(id)].Load())[id]
}

// Check decides whether packet p, received from client id, may be
// forwarded. now is the current time (injected; never read from the clock
// here).
func (t *Table) Check(id ClientID, p ippacket.Packet, now time.Time) Verdict {
	c := t.Client(id)
	if c == nil {
		return DropUnknownClient
	}
	return c.Check(p, now)
}

// CheckBytes parses b and checks it (DropMalformed if it does not parse).
func (t *Table) CheckBytes(id ClientID, b []byte, now time.Time) Verdict {
	p, err := ippacket.Parse(b)
	if err != nil {
		return DropMalformed
	}
	return t.Check(id, p, now)
}

// SetGatewayAddrs sets the gateway's own tunnel addresses; packets to them
// get AllowGateway.
func (t *Table) SetGatewayAddrs(v4, v6 netip.Addr) {
	t.gw.Store(&[2]netip.Addr{v4.Unmap(), v6})
}

// UpsertClient adds client id or updates its tunnel addresses, and returns
// its handle.
func (t *Table) UpsertClient(id ClientID, v4, v6 netip.Addr) *Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.clients[id]
	if cs == nil {
		cs = &clientState{
			handle:  &Client{t: t},
			auths:   map[ResourceID]int64{},
			proxies: map[ResourceID]map[string][]netip.Addr{},
		}
		t.clients[id] = cs
		t.publishIndex(id, cs.handle)
	}
	cs.v4, cs.v6 = v4.Unmap(), v6
	t.rebuild(cs)
	return cs.handle
}

// RemoveClient forgets client id and everything it was authorized for.
func (t *Table) RemoveClient(id ClientID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.clients[id]
	if cs == nil {
		return
	}
	for rid := range cs.auths {
		if rs := t.resources[rid]; rs != nil {
			delete(rs.holders, id)
		}
	}
	delete(t.clients, id)
	cs.handle.snap.Store(nil)
	t.publishIndex(id, nil)
}

// publishIndex copies id's shard with id set to c (nil: removed).
func (t *Table) publishIndex(id ClientID, c *Client) {
	sh := &t.shards[shardOf(id)]
	old := *sh.Load()
	m := make(map[ClientID]*Client, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if c == nil {
		delete(m, id)
	} else {
		m[id] = c
	}
	sh.Store(&m)
}

// UpsertResource adds or updates a resource (portal create_authorization
// and resource_updated); every client holding it sees the change.
func (t *Table) UpsertResource(r Resource) error {
	switch r.Kind {
	case KindCIDR:
		if !r.Prefix.IsValid() {
			return ErrInvalidResource
		}
		r.Prefix = netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits()).Masked()
		if !r.Prefix.IsValid() {
			return ErrInvalidResource
		}
	case KindDNS, KindInternet:
		r.Prefix = netip.Prefix{}
	default:
		return ErrInvalidResource
	}
	r.Filters = append([]Filter(nil), r.Filters...)
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.resources[r.ID]
	if rs == nil {
		rs = &resourceState{holders: map[ClientID]struct{}{}}
		t.resources[r.ID] = rs
	}
	rs.r, rs.filter = r, compileFilters(r.Filters)
	for cid := range rs.holders {
		t.rebuild(t.clients[cid])
	}
	return nil
}

// RemoveResource forgets a resource and every authorization for it.
func (t *Table) RemoveResource(id ResourceID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.resources[id]
	if rs == nil {
		return
	}
	delete(t.resources, id)
	for cid := range rs.holders {
		cs := t.clients[cid]
		delete(cs.auths, id)
		t.rebuild(cs)
	}
}

// Authorize grants client access to resource until expires (zero: never).
// Both must be known. Authorizing again updates the expiry.
func (t *Table) Authorize(client ClientID, resource ResourceID, expires time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs, rs := t.clients[client], t.resources[resource]
	if cs == nil {
		return ErrUnknownClient
	}
	if rs == nil {
		return ErrUnknownResource
	}
	cs.auths[resource] = expiryNanos(expires)
	rs.holders[client] = struct{}{}
	t.rebuild(cs)
	return nil
}

func expiryNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1
}

// Revoke removes client's authorization for resource (portal
// reject_access) and returns how many authorizations the client still has
// (at 0 the session closes the connection with goodbye).
func (t *Table) Revoke(client ClientID, resource ResourceID) (remaining int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.clients[client]
	if cs == nil {
		return 0, ErrUnknownClient
	}
	if _, ok := cs.auths[resource]; ok {
		delete(cs.auths, resource)
		if rs := t.resources[resource]; rs != nil {
			delete(rs.holders, client)
		}
		t.rebuild(cs)
	}
	return len(cs.auths), nil
}

// Authorizations returns how many authorizations client holds (expired
// ones included until ExpireAuthorizations removes them).
func (t *Table) Authorizations(client ClientID) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cs := t.clients[client]; cs != nil {
		return len(cs.auths)
	}
	return 0
}

// SetProxyIPs records the proxy IPs client assigned to domain of DNS
// resource resource (the p2p assigned_ips message). Empty addrs forgets
// the domain. They take effect while the client is authorized for the
// resource.
func (t *Table) SetProxyIPs(client ClientID, resource ResourceID, domain string, addrs []netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.clients[client]
	if cs == nil {
		return ErrUnknownClient
	}
	doms := cs.proxies[resource]
	if len(addrs) == 0 {
		delete(doms, domain)
		if len(doms) == 0 {
			delete(cs.proxies, resource)
		}
	} else {
		if doms == nil {
			doms = map[string][]netip.Addr{}
			cs.proxies[resource] = doms
		}
		doms[domain] = append([]netip.Addr(nil), addrs...)
	}
	t.rebuild(cs)
	return nil
}

// RetainAuthorizations applies the portal's init list: every known
// client keeps exactly the listed authorizations (for known resources),
// with the listed expiries. Entries for unknown clients or resources are
// ignored. It returns the known clients left without any authorization.
func (t *Table) RetainAuthorizations(auths []Authorization) (emptied []ClientID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	want := map[ClientID]map[ResourceID]int64{}
	for _, a := range auths {
		if t.clients[a.Client] == nil || t.resources[a.Resource] == nil {
			continue
		}
		if want[a.Client] == nil {
			want[a.Client] = map[ResourceID]int64{}
		}
		want[a.Client][a.Resource] = expiryNanos(a.Expires)
	}
	for cid, cs := range t.clients {
		for rid := range cs.auths {
			if rs := t.resources[rid]; rs != nil {
				delete(rs.holders, cid)
			}
		}
		cs.auths = want[cid]
		if cs.auths == nil {
			cs.auths = map[ResourceID]int64{}
			emptied = append(emptied, cid)
		}
		for rid := range cs.auths {
			t.resources[rid].holders[cid] = struct{}{}
		}
		t.rebuild(cs)
	}
	return emptied
}

// ExpireAuthorizations removes authorizations that expired at or before
// now (lookups already refuse them; this frees them) and returns the
// clients that lost their last authorization in this call.
func (t *Table) ExpireAuthorizations(now time.Time) (emptied []ClientID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := now.UnixNano()
	for cid, cs := range t.clients {
		changed := false
		for rid, exp := range cs.auths {
			if exp != 0 && n >= exp {
				delete(cs.auths, rid)
				if rs := t.resources[rid]; rs != nil {
					delete(rs.holders, cid)
				}
				changed = true
			}
		}
		if changed {
			t.rebuild(cs)
			if len(cs.auths) == 0 {
				emptied = append(emptied, cid)
			}
		}
	}
	return emptied
}

// NumClients returns the number of known clients.
func (t *Table) NumClients() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.clients)
}
