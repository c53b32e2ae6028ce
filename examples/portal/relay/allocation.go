package relay

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Lifetimes and limits (reference §5, RFC 8656).
const (
	DefaultAllocationLifetime = 600 * time.Second
	MaxAllocationLifetime     = 3600 * time.Second
	PermissionLifetime        = 300 * time.Second
	ChannelLifetime           = 600 * time.Second
	// ChannelRebindCooldown: after a channel binding expired, its number
	// stays reserved for its old peer this long (a late packet for the old
	// peer must not reach a new one).
	ChannelRebindCooldown = 300 * time.Second
)

// allocation is one client 5-tuple's relayed transport address.
//
// Concurrency: the fields under "control" are guarded by Server.mu. The
// data plane reads only the immutable fields and the atomic snapshots
// (channels, perms), which the control plane replaces whole (copy on
// write) under Server.mu.
type allocation struct {
	client   netip.AddrPort // the client's address as the relay sees it
	relayed  netip.AddrPort // public relayed transport address
	sock     *sock          // the allocation's socket (peer side)
	username string

	channels atomic.Pointer[channelTable]
	perms    atomic.Pointer[map[netip.Addr]time.Time] // peer IP → expiry (without channels' implicit permissions)

	// control
	expires   time.Time
	allocTxID [12]byte // the ALLOCATE transaction, answered again on retransmission
	allocRes  []byte
	bindings  map[uint16]binding // current channel bindings
	cooling   map[uint16]binding // expired bindings in their rebind cooldown (expires = end of cooldown)
	permExp   map[netip.Addr]time.Time
	closed    bool
}

type binding struct {
	peer    netip.AddrPort
	expires time.Time
}

// channelTable is an immutable snapshot of an allocation's channel
// bindings for the data plane.
type channelTable struct {
	byNum  map[uint16]netip.AddrPort
	byPeer map[netip.AddrPort]uint16
}

var emptyChannels = &channelTable{byNum: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{}}

func newAllocation(client, relayed netip.AddrPort, s *sock, username string, expires time.Time) *allocation {
	a := &allocation{client: client, relayed: relayed, sock: s, username: username, expires: expires,
		bindings: map[uint16]binding{}, cooling: map[uint16]binding{}, permExp: map[netip.Addr]time.Time{}}
	a.channels.Store(emptyChannels)
	a.perms.Store(&map[netip.Addr]time.Time{})
	return a
}

// publishChannels rebuilds the data plane's channel snapshot. Server.mu held.
func (a *allocation) publishChannels() {
	t := &channelTable{byNum: make(map[uint16]netip.AddrPort, len(a.bindings)),
		byPeer: make(map[netip.AddrPort]uint16, len(a.bindings))}
	for n, b := range a.bindings {
		t.byNum[n] = b.peer
		t.byPeer[b.peer] = n
	}
	a.channels.Store(t)
}

// publishPerms rebuilds the permission snapshot. Server.mu held.
func (a *allocation) publishPerms() {
	m := make(map[netip.Addr]time.Time, len(a.permExp))
	for ip, e := range a.permExp {
		m[ip] = e
	}
	a.perms.Store(&m)
}

// permitted reports whether peer IP may send to the client without a
// channel (a permission, or any channel binding to that IP, which
// Firezone's relay treats as a permission).
func (a *allocation) permitted(ip netip.Addr, now time.Time) bool {
	if e, ok := (*a.perms.Load())[ip]; ok && now.Before(e) {
		return true
	}
	for p := range a.channels.Load().byPeer {
		if p.Addr() == ip {
			return true
		}
	}
	return false
}

// bindErr is why a channel bind is refused (400 in both cases).
type bindErr string

func (e bindErr) Error() string { return string(e) }

// bind installs or refreshes channel num → peer. Server.mu held.
func (a *allocation) bind(num uint16, peer netip.AddrPort, now time.Time) error {
	if b, ok := a.bindings[num]; ok && b.peer != peer {
		return bindErr("channel already bound to another peer")
	}
	if c, ok := a.cooling[num]; ok && c.peer != peer && now.Before(c.expires) {
		return bindErr("channel in its rebind cooldown")
	}
	for n, b := range a.bindings {
		if b.peer == peer && n != num {
			return bindErr("peer already bound to another channel")
		}
	}
	_, existed := a.bindings[num]
	a.bindings[num] = binding{peer: peer, expires: now.Add(ChannelLifetime)}
	delete(a.cooling, num)
	a.permExp[peer.Addr()] = now.Add(PermissionLifetime)
	a.publishPerms()
	if !existed {
		a.publishChannels()
	}
	return nil
}

// permit installs or refreshes a permission for ip. Server.mu held.
func (a *allocation) permit(ip netip.Addr, now time.Time) {
	a.permExp[ip] = now.Add(PermissionLifetime)
	a.publishPerms()
}

// expire drops expired channel bindings (into their cooldown), cooldowns
// and permissions. Server.mu held.
func (a *allocation) expire(now time.Time) {
	changed := false
	for n, b := range a.bindings {
		if !now.Before(b.expires) {
			delete(a.bindings, n)
			a.cooling[n] = binding{peer: b.peer, expires: b.expires.Add(ChannelRebindCooldown)}
			changed = true
		}
	}
	if changed {
		a.publishChannels()
	}
	for n, c := range a.cooling {
		if !now.Before(c.expires) {
			delete(a.cooling, n)
		}
	}
	changed = false
	for ip, e := range a.permExp {
		if !now.Before(e) {
			delete(a.permExp, ip)
			changed = true
		}
	}
	if changed {
		a.publishPerms()
	}
}
