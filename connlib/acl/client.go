package acl

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/prefixtable"
	"github.com/gozone/gozone/connlib/routing"
)

// Client is one client's view of the table. Its methods are safe for
// concurrent use and lock-free.
type Client struct {
	t    *Table
	snap atomic.Pointer[clientSnapshot] // nil once the client is removed
}

// clientSnapshot is immutable once published.
type clientSnapshot struct {
	v4, v6   netip.Addr
	tab      *prefixtable.Table
	grants   []grant // by tab entry index
	internet []grant
}

type grant struct {
	expires int64 // Unix ns; 0 = never
	filter  *filterSet
}

func (g *grant) expired(now int64) bool { return g.expires != 0 && now >= g.expires }

// rebuild publishes a new snapshot for cs. Caller holds t.mu.
func (t *Table) rebuild(cs *clientState) {
	s := &clientSnapshot{v4: cs.v4, v6: cs.v6}
	var ps []netip.Prefix
	// Map order does not matter: with "any covering grant allows"
	// semantics the verdict is independent of the order of identical
	// prefixes.
	for rid, exp := range cs.auths {
		rs := t.resources[rid]
		if rs == nil {
			continue
		}
		g := grant{expires: exp, filter: rs.filter}
		switch rs.r.Kind {
		case KindCIDR:
			ps = append(ps, rs.r.Prefix)
			s.grants = append(s.grants, g)
		case KindDNS:
			for _, addrs := range cs.proxies[rid] {
				for _, a := range addrs {
					a = a.Unmap()
					ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
					s.grants = append(s.grants, g)
				}
			}
		case KindInternet:
			s.internet = append(s.internet, g)
		}
	}
	s.tab = prefixtable.New(ps)
	cs.handle.snap.Store(s)
}

// Check decides whether packet p, received from this client, may be
// forwarded at time now. It never allocates.
func (c *Client) Check(p ippacket.Packet, now time.Time) Verdict {
	s := c.snap.Load()
	if s == nil {
		return DropUnknownClient
	}
	if src := p.Src(); src != s.v4 && src != s.v6 {
		return DropSpoofedSource
	}
	dst := p.Dst()
	if routing.IsTunnelAddr(dst) {
		if gw := c.t.gw.Load(); gw != nil && (dst == gw[0] || dst == gw[1]) {
			return AllowGateway
		}
		return DropPeerDestination
	}
	n := now.UnixNano()
	matched, expired := false, false
	for i := s.tab.Find(dst); i != prefixtable.None; i = s.tab.Parent(i) {
		g := &s.grants[i]
		if g.expired(n) {
			expired = true
			continue
		}
		if g.filter.allows(p) {
			return Allow
		}
		matched = true
	}
	forbidden := false
	if len(s.internet) > 0 {
		if IsForbiddenInternet(dst) {
			forbidden = true
		} else {
			for i := range s.internet {
				g := &s.internet[i]
				if g.expired(n) {
					expired = true
					continue
				}
				if g.filter.allows(p) {
					return Allow
				}
				matched = true
			}
		}
	}
	switch {
	case matched:
		return DropFiltered
	case expired:
		return DropExpired
	case forbidden:
		return DropForbiddenDestination
	}
	return DropNoResource
}

// Addrs returns the client's tunnel addresses (zero Addrs once removed).
func (c *Client) Addrs() (v4, v6 netip.Addr) {
	if s := c.snap.Load(); s != nil {
		return s.v4, s.v6
	}
	return netip.Addr{}, netip.Addr{}
}
