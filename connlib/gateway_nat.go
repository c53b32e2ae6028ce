package connlib

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
)

// NAT timeouts of DNS-resource flows (reference §6.1, Firezone's gateway
// NAT table).
const (
	natTCPTimeout         = 2*time.Hour + 4*time.Minute
	natUDPTimeout         = 120 * time.Second
	natICMPTimeout        = 120 * time.Second
	natUnconfirmedTimeout = 60 * time.Second
)

// dnsNAT translates a client's DNS proxy IPs to the real addresses of the
// resource's domain: per flow, a real address of the proxy IP's family is
// picked round-robin when the flow starts and kept for its lifetime, so
// replies are translated back to the proxy IP the client used.
//
// Concurrency: targets are an immutable map behind an atomic pointer,
// written by the session loop. Flows live in shards chosen by the client's
// address, each guarded by a mutex; the packet path locks one shard per
// packet of a NATed flow. A new flow allocates its entry; established flows
// do not allocate.
type dnsNAT struct {
	targets atomic.Pointer[map[proxyKey]*natTarget]
	shards  [32]natShard
	flows   atomic.Int64 // live flow entries (lets non-NAT replies skip the lock)
}

type proxyKey struct{ client, proxy netip.Addr }

type natTarget struct {
	reals []netip.Addr // of the proxy IP's family
	next  atomic.Uint32
}

type natShard struct {
	mu  sync.Mutex
	out map[ippacket.FiveTuple]*natFlow // client's tuple (dst = proxy IP)
	in  map[ippacket.FiveTuple]*natFlow // resource's reply tuple (src = real IP)
}

type natFlow struct {
	outKey, inKey ippacket.FiveTuple
	real, proxy   netip.Addr
	last          time.Time
	confirmed     bool
}

func newDNSNAT() *dnsNAT {
	n := &dnsNAT{}
	m := map[proxyKey]*natTarget{}
	n.targets.Store(&m)
	for i := range n.shards {
		n.shards[i].out = make(map[ippacket.FiveTuple]*natFlow)
		n.shards[i].in = make(map[ippacket.FiveTuple]*natFlow)
	}
	return n
}

func (n *dnsNAT) shard(client netip.Addr) *natShard {
	b := client.As16()
	return &n.shards[(b[15]^b[14]^b[13])%uint8(len(n.shards))]
}

// setTargets maps each of the client's proxy IPs to the real addresses of
// its family (none: packets to it get ICMP unreachable). Called by the
// session loop.
func (n *dnsNAT) setTargets(clientV4, clientV6 netip.Addr, proxies, reals []netip.Addr) {
	old := *n.targets.Load()
	m := make(map[proxyKey]*natTarget, len(old)+len(proxies))
	for k, v := range old {
		m[k] = v
	}
	for _, p := range proxies {
		t := &natTarget{}
		for _, r := range reals {
			if r.Is4() == p.Is4() {
				t.reals = append(t.reals, r)
			}
		}
		client := clientV4
		if p.Is6() {
			client = clientV6
		}
		m[proxyKey{client, p}] = t
	}
	n.targets.Store(&m)
}

// translateOut rewrites a client packet's proxy destination to a real
// address. It reports false when there is none of the packet's family.
func (n *dnsNAT) translateOut(p ippacket.Packet, now time.Time) bool {
	t := p.Tuple()
	sh := n.shard(t.Src)
	sh.mu.Lock()
	f := sh.out[t]
	if f == nil {
		tgt := (*n.targets.Load())[proxyKey{t.Src, t.Dst}]
		if tgt == nil || len(tgt.reals) == 0 {
			sh.mu.Unlock()
			return false
		}
		real := tgt.reals[int(tgt.next.Add(1)-1)%len(tgt.reals)]
		rt := t
		rt.Dst = real
		f = &natFlow{outKey: t, inKey: rt.Reverse(), real: real, proxy: t.Dst}
		sh.out[t] = f
		sh.in[f.inKey] = f
		n.flows.Add(1)
	}
	f.last = now
	real := f.real
	sh.mu.Unlock()
	return p.SetDst(real) == nil
}

// translateIn rewrites a reply's real source back to the proxy IP the
// client used; packets of other flows are left alone.
func (n *dnsNAT) translateIn(p ippacket.Packet, now time.Time) {
	if n.flows.Load() == 0 {
		return
	}
	t := p.Tuple()
	sh := n.shard(t.Dst)
	sh.mu.Lock()
	f := sh.in[t]
	if f == nil {
		sh.mu.Unlock()
		return
	}
	f.last, f.confirmed = now, true
	proxy := f.proxy
	sh.mu.Unlock()
	_ = p.SetSrc(proxy)
}

// translateInICMPError rewrites an ICMP error about a NATed flow (e.g.
// "fragmentation needed" or "port unreachable" from the real address) so
// the client's stack can match it: the quoted packet's destination and,
// when the error comes from the real address itself, the outer source
// become the proxy IP. Rare packets: checksums are recomputed in full.
func (n *dnsNAT) translateInICMPError(p ippacket.Packet) {
	if n.flows.Load() == 0 {
		return
	}
	q, err := p.ICMPErrorQuote()
	if err != nil {
		return
	}
	t := q.Tuple() // the client's packet as it left the gateway
	sh := n.shard(t.Src)
	sh.mu.Lock()
	f := sh.in[t.Reverse()]
	var real, proxy netip.Addr
	if f != nil {
		real, proxy = f.real, f.proxy
	}
	sh.mu.Unlock()
	if f == nil {
		return
	}
	_ = q.SetDst(proxy)
	if p.Src() == real {
		_ = p.SetSrc(proxy)
	}
	p.FixChecksums()
}

func gwNATTimeout(f *natFlow) time.Duration {
	if !f.confirmed {
		return natUnconfirmedTimeout
	}
	switch f.outKey.Proto {
	case ippacket.ProtoTCP:
		return natTCPTimeout
	case ippacket.ProtoUDP:
		return natUDPTimeout
	}
	return natICMPTimeout
}

// expire removes flows idle past their timeout (1 Hz from the loop).
func (n *dnsNAT) expire(now time.Time) {
	n.sweep(func(f *natFlow) bool { return now.Sub(f.last) >= gwNATTimeout(f) })
}

// removeClient forgets a client's flows and proxy targets.
func (n *dnsNAT) removeClient(v4, v6 netip.Addr) {
	n.sweep(func(f *natFlow) bool { return f.outKey.Src == v4 || f.outKey.Src == v6 })
	old := *n.targets.Load()
	m := make(map[proxyKey]*natTarget, len(old))
	for k, v := range old {
		if k.client != v4 && k.client != v6 {
			m[k] = v
		}
	}
	n.targets.Store(&m)
}

func (n *dnsNAT) sweep(drop func(*natFlow) bool) {
	for i := range n.shards {
		sh := &n.shards[i]
		sh.mu.Lock()
		for k, f := range sh.out {
			if drop(f) {
				delete(sh.out, k)
				delete(sh.in, f.inKey)
				n.flows.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

// numFlows returns the live NAT flows (tests, status).
func (n *dnsNAT) numFlows() int { return int(n.flows.Load()) }
