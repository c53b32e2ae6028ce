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
// # Typical use on the gateway
//
//	// client → resource (decapsulated from WireGuard peer id):
//	p, err := ippacket.Parse(b)           // err: drop, count
//	v := table.Check(id, p, now)          // or a cached *Client's Check
//	if !v.Allowed() {
//		if kind, ok := v.ICMP(); ok { /* ippacket.BuildUnreachable(buf, p, kind, netip.Addr{}) back to the client */ }
//		return
//	}
//	// DNS-resource NAT (proxy IP → real IP), then:
//	tracker.Track(p, now)                 // the tuple as written to the TUN; also for AllowGateway
//
//	// resource → client (read from the TUN), before the reverse NAT, so
//	// the tuple is the one Track saw:
//	if !tracker.AllowReply(p, now) { drop }
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
// Check, CheckBytes, Client and Client.Check are lock-free, never block,
// never allocate, and may be called from any number of goroutines
// concurrently with writers. Writes go through Update (a batch, Tx) or
// the Table's single-change shorthands; writers are serialised by a mutex
// and, when the batch ends, publish new immutable per-client snapshots
// with atomic pointer stores (copy-on-write, as Tailscale does for hot
// configuration). A checker sees each client's state either before or
// after a batch, never half of it (atomicity is per client, not across
// clients). The client index is split in 64 copy-on-write shards, each
// copied at most once per batch.
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
	removed bool
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

// NumClients returns the number of known clients.
func (t *Table) NumClients() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.clients)
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
