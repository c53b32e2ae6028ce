package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Address ranges of the client's tunnel (reference §1.4 "Special IPs").
var (
	// ProxyRangeV4 and ProxyRangeV6 hold the proxy IPs handed out for DNS
	// resource names (IPV4_RESOURCES / IPV6_RESOURCES). The client routes
	// both into the tunnel.
	ProxyRangeV4 = netip.MustParsePrefix("100.96.0.0/11")
	ProxyRangeV6 = netip.MustParsePrefix("fd00:2021:1111:8000::/107")

	// SentinelRangeV4 and SentinelRangeV6 hold the sentinel DNS server
	// addresses (DNS_SENTINELS_V4 / DNS_SENTINELS_V6). SentinelRangeV4 lies
	// inside ProxyRangeV4, so proxy allocation skips it.
	SentinelRangeV4 = netip.MustParsePrefix("100.100.111.0/24")
	SentinelRangeV6 = netip.MustParsePrefix("fd00:2021:1111:8000:100:100:111:0/120")
)

// ProxyIPsPerFamily is how many proxy IPs of each family a name gets.
const ProxyIPsPerFamily = 4

// ErrProxyIPsExhausted is returned when no more names can get proxy IPs
// (about half a million names with the reference ranges).
var ErrProxyIPsExhausted = errors.New("dns: proxy IP range exhausted")

// ProxyIPs are the addresses assigned to one name: always 4 IPv4 and 4 IPv6,
// whatever the resource's IPStack, so that changing the stack later never
// changes the addresses.
type ProxyIPs struct {
	V4 [ProxyIPsPerFamily]netip.Addr
	V6 [ProxyIPsPerFamily]netip.Addr
}

// AppendForStack appends the addresses the stack allows (IPv4 first), 4 or 8
// of them, to dst. That is the list an assigned_ips message carries.
func (p *ProxyIPs) AppendForStack(dst []netip.Addr, s IPStack) []netip.Addr {
	if s.IPv4() {
		dst = append(dst, p.V4[:]...)
	}
	if s.IPv6() {
		dst = append(dst, p.V6[:]...)
	}
	return dst
}

// familyPool hands out addresses of one prefix in order, skipping excluded
// sub-ranges. Offsets are host parts relative to the prefix base; offset 0
// (the all-zero host, a subnet-router anycast address in IPv6) is never
// used, and neither is the last one (the IPv4 broadcast-like address).
type familyPool struct {
	base    netip.Addr
	size    uint64 // number of offsets in the prefix
	next    uint64
	exclude [][2]uint64 // [lo, hi] offsets, sorted
}

func newFamilyPool(p netip.Prefix, excl ...netip.Prefix) familyPool {
	p = p.Masked()
	bits := p.Addr().BitLen() - p.Bits()
	if bits > 32 {
		bits = 32 // more than enough names; keeps offsets small
	}
	fp := familyPool{base: p.Addr(), size: 1 << bits, next: 1}
	for _, e := range excl {
		e = e.Masked()
		if !p.Contains(e.Addr()) || e.Bits() < p.Bits() {
			continue
		}
		lo := hostOffset(p.Addr(), e.Addr())
		n := uint64(1) << (e.Addr().BitLen() - e.Bits())
		fp.exclude = append(fp.exclude, [2]uint64{lo, lo + n - 1})
	}
	return fp
}

// hostOffset returns the low 64 bits of a-base (enough for our prefixes).
func hostOffset(base, a netip.Addr) uint64 {
	b1, b2 := base.As16(), a.As16()
	return binary.BigEndian.Uint64(b2[8:]) - binary.BigEndian.Uint64(b1[8:])
}

func (fp *familyPool) addr(off uint64) netip.Addr {
	b := fp.base.As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+off)
	a := netip.AddrFrom16(b)
	if fp.base.Is4() {
		return a.Unmap()
	}
	return a
}

// skip moves off past any excluded range it falls in.
func (fp *familyPool) skip(off uint64) uint64 {
	for _, e := range fp.exclude {
		if off >= e[0] && off <= e[1] {
			off = e[1] + 1
		}
	}
	return off
}

// take fills dst with the next len(dst) addresses, or returns false without
// consuming anything.
func (fp *familyPool) take(dst []netip.Addr, commit bool) bool {
	off := fp.next
	for i := range dst {
		off = fp.skip(off)
		if off >= fp.size-1 {
			return false
		}
		dst[i] = fp.addr(off)
		off++
	}
	if commit {
		fp.next = off
	}
	return true
}

// proxyAllocator assigns ProxyIPs to names in order. Not safe for concurrent
// use.
type proxyAllocator struct {
	v4, v6 familyPool
}

func newProxyAllocator(v4, v6 netip.Prefix) proxyAllocator {
	return proxyAllocator{
		v4: newFamilyPool(v4, SentinelRangeV4),
		v6: newFamilyPool(v6, SentinelRangeV6),
	}
}

func (a *proxyAllocator) allocate() (ProxyIPs, error) {
	var p ProxyIPs
	if !a.v4.take(p.V4[:], false) || !a.v6.take(p.V6[:], false) {
		return ProxyIPs{}, ErrProxyIPsExhausted
	}
	a.v4.take(p.V4[:], true)
	a.v6.take(p.V6[:], true)
	return p, nil
}

// IsProxyIP reports whether a lies in one of the proxy ranges (and is not a
// sentinel).
func IsProxyIP(a netip.Addr) bool {
	a = a.Unmap()
	return (ProxyRangeV4.Contains(a) && !SentinelRangeV4.Contains(a)) || ProxyRangeV6.Contains(a)
}
