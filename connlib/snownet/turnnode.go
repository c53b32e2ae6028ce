package snownet

import "net/netip"

// sharedTURN reports whether TURN runs on the shared socket.
func (n *Node) sharedTURN() bool { return !n.cfg.PionTURN }

// syncProxiesLocked makes the shared TURN allocations (the default, see Config.PionTURN)
// match the relay list: one proxy per relay address (IPv4 and IPv6),
// replaced when its credentials change
// or when all is set (the socket moved to a new port). Old proxies are
// closed in the background (closing deletes the allocation, which waits
// for the relay). The caller holds n.mu.
func (n *Node) syncProxiesLocked(all bool) {
	if !n.sharedTURN() {
		return
	}
	want := make(map[netip.AddrPort]Relay)
	for _, r := range n.relays {
		// IPv6 relays too: an allocation on the IPv6 socket asks for an
		// IPv6 relayed address. pion only asks for relay candidates on
		// the TURN URLs ice.go gives it (IPv4 today); an unused proxy
		// allocates nothing.
		r.Addr = netip.AddrPortFrom(r.Addr.Addr().Unmap(), r.Addr.Port())
		want[r.Addr] = r
	}
	next := make(map[netip.AddrPort]*turnProxy, len(want))
	var old []*turnProxy
	for ap, p := range n.proxies {
		r, ok := want[ap]
		if ok && !all && p.alloc.cfg.relay == r {
			next[ap] = p
			continue
		}
		old = append(old, p)
	}
	for ap, r := range want {
		if next[ap] != nil {
			continue
		}
		p := newTURNProxy(r, n.bind.sendTo, n.log.Named("turn"))
		p.refusedRealm = func() { n.realmDrops.Add(1) }
		p.alloc.onReplaced = func(old, now netip.AddrPort) { n.relayAllocationReplaced(ap, old, now) }
		next[ap] = p
	}
	n.proxies = next
	routes := make(map[netip.AddrPort]*turnProxy, len(next))
	for ap, p := range next {
		routes[ap] = p
	}
	n.bind.turn.Store(&routes)
	for _, p := range old {
		n.closing.Add(1)
		go func() {
			defer n.closing.Done()
			p.close()
		}()
	}
}

// takeProxiesLocked removes every proxy (Close) and returns them.
func (n *Node) takeProxiesLocked() []*turnProxy {
	out := make([]*turnProxy, 0, len(n.proxies))
	for _, p := range n.proxies {
		out = append(out, p)
	}
	n.proxies = nil
	empty := map[netip.AddrPort]*turnProxy{}
	n.bind.turn.Store(&empty)
	return out
}

// applySharedTURNLocked puts a pair whose local candidate is our shared
// allocation on the Bind's own ChannelData path. It reports false (the
// caller falls back to pion's conn) if the candidate is not on a shared
// allocation or no channel is bound to the remote yet.
func (c *connection) applySharedTURNLocked() bool {
	local, ok := candidateAddrPort(c.pair.Local)
	if !ok {
		return false
	}
	tp := c.n.bind.turnProxyForRelayed(local)
	if tp == nil {
		return false
	}
	ch, ok := tp.alloc.channelFor(c.pair.RemoteAddr)
	if !ok {
		return false
	}
	c.n.bind.setTURNPath(c.id, tp, ch)
	return true
}

// candidateAddrPort is the transport address of an SDP candidate.
func candidateAddrPort(sdp string) (netip.AddrPort, bool) {
	cand, err := parseCandidate(sdp)
	if err != nil {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(cand.Address())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(cand.Port())), true
}
