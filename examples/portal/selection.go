package devportal

import (
	"net/netip"
	"slices"
)

// pickGateway chooses the gateway for an authorization among the online
// gateways that serve the resource (reference §2.2 step 2):
//
//  1. a gateway the client is already connected to, if one qualifies, so
//     a client keeps one tunnel per site;
//  2. otherwise the one with the fewest other clients (load), ties broken
//     at random, which spreads clients over a site's gateways.
//
// load counts, per gateway id, the clients other than the requesting one
// that hold or await an authorization there. intn returns a value in
// [0,n). It returns nil when cands is empty. Offline gateways are never in
// cands, which is what makes failover work: once a gateway disconnects all
// new authorizations go to the others.
func pickGateway(cands []*gatewayConn, connected []string, load map[string]int, intn func(int) int) *gatewayConn {
	if len(cands) == 0 {
		return nil
	}
	for _, g := range cands {
		if slices.Contains(connected, g.id) {
			return g
		}
	}
	best := []*gatewayConn{}
	min := -1
	for _, g := range cands {
		switch l := load[g.id]; {
		case min < 0 || l < min:
			min, best = l, append(best[:0], g)
		case l == min:
			best = append(best, g)
		}
	}
	return best[intn(len(best))]
}

// ipam hands out tunnel addresses from 100.64.0.0/11 and
// fd00:2021:1111::/107, one pair per device id, kept for the portal's
// lifetime so a reconnecting device keeps its addresses.
type ipam struct {
	byID map[string]int
	next int
}

var (
	ipv4Pool = netip.MustParsePrefix("100.64.0.0/11")
	ipv6Pool = netip.MustParsePrefix("fd00:2021:1111::/107")
)

// poolSize is the number of host indices both pools can hold (2^21 for
// /107 is the smaller one), minus network and broadcast-like ends.
const poolSize = 1<<21 - 2

func (p *ipam) assign(id string) (v4, v6 netip.Addr, ok bool) {
	if p.byID == nil {
		p.byID = map[string]int{}
	}
	i, seen := p.byID[id]
	if !seen {
		if p.next >= poolSize {
			return netip.Addr{}, netip.Addr{}, false
		}
		p.next++
		i = p.next
		p.byID[id] = i
	}
	return nth(ipv4Pool, i), nth(ipv6Pool, i), true
}

func nth(p netip.Prefix, i int) netip.Addr {
	b := p.Addr().AsSlice()
	for j := len(b) - 1; i > 0 && j >= 0; j-- {
		sum := int(b[j]) + i&0xff
		b[j] = byte(sum)
		i = i>>8 + sum>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
