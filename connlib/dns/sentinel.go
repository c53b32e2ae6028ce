package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// DNSPort is the port sentinels are queried on.
const DNSPort = 53

// Upstream is a resolver the stub forwards to: a Do53 server (UDP or TCP)
// or a DNS-over-HTTPS URL. Exactly one field is set.
type Upstream struct {
	Do53 netip.AddrPort
	DoH  string
}

func (u Upstream) String() string {
	if u.DoH != "" {
		return u.DoH
	}
	return u.Do53.String()
}

// IsSentinel reports whether a is in one of the sentinel ranges.
func IsSentinel(a netip.Addr) bool {
	a = a.Unmap()
	return SentinelRangeV4.Contains(a) || SentinelRangeV6.Contains(a)
}

// EffectiveUpstreams applies the reference's priority (§1.4 "Client DNS"):
// the portal's Do53 servers if there are any, else its DoH servers, else the
// system's resolvers. Do53 servers use port 53. Sentinel addresses (the
// system config may already point at us), invalid addresses and duplicates
// are dropped; order is kept. An empty result means DNS resources cannot
// work until a resolver appears.
func EffectiveUpstreams(do53 []netip.Addr, doh []string, system []netip.Addr) []Upstream {
	if us := do53Upstreams(do53); len(us) > 0 {
		return us
	}
	var us []Upstream
	for _, u := range doh {
		c := Upstream{DoH: u}
		if u != "" && !slices.Contains(us, c) {
			us = append(us, c)
		}
	}
	if len(us) > 0 {
		return us
	}
	return do53Upstreams(system)
}

func do53Upstreams(ips []netip.Addr) []Upstream {
	var us []Upstream
	for _, ip := range ips {
		ip = ip.Unmap()
		if !ip.IsValid() || ip.IsUnspecified() || IsSentinel(ip) {
			continue
		}
		u := Upstream{Do53: netip.AddrPortFrom(ip, DNSPort)}
		if !slices.Contains(us, u) {
			us = append(us, u)
		}
	}
	return us
}

// ErrTooManyUpstreams: more upstreams of one family than sentinel addresses.
var ErrTooManyUpstreams = errors.New("dns: too many upstream resolvers for the sentinel range")

type sentinelPair struct {
	sentinel netip.Addr
	upstream Upstream
}

// SentinelMap maps upstream resolvers one-to-one onto sentinel addresses,
// which is what the OS's DNS configuration points at. IPv4 upstreams get
// IPv4 sentinels (100.100.111.1, .2, …), IPv6 upstreams IPv6 sentinels
// (fd00:2021:1111:8000:100:100:111:1, :2, …), each family in list order, and
// DoH upstreams IPv4 sentinels (as Firezone does). The all-zero host is
// skipped in both families and the IPv4 broadcast address too, so a family
// holds up to 254 (IPv4) or 255 (IPv6) upstreams.
//
// A SentinelMap is immutable and safe for concurrent use; build a new one
// when the upstreams change.
type SentinelMap struct {
	pairs []sentinelPair
}

// NewSentinelMap assigns sentinels to upstreams (duplicates are dropped).
func NewSentinelMap(upstreams []Upstream) (*SentinelMap, error) {
	m := &SentinelMap{}
	next4 := SentinelRangeV4.Addr().Next()
	next6 := SentinelRangeV6.Addr().Next()
	for _, u := range upstreams {
		if (u.DoH == "") == !u.Do53.IsValid() {
			return nil, fmt.Errorf("dns: upstream %+v must be exactly one of Do53 or DoH", u)
		}
		if slices.ContainsFunc(m.pairs, func(p sentinelPair) bool { return p.upstream == u }) {
			continue
		}
		var s netip.Addr
		if u.DoH != "" || u.Do53.Addr().Unmap().Is4() {
			s = next4
			next4 = next4.Next()
			if !SentinelRangeV4.Contains(next4) { // s was the broadcast address
				return nil, ErrTooManyUpstreams
			}
		} else {
			s = next6
			if !SentinelRangeV6.Contains(s) {
				return nil, ErrTooManyUpstreams
			}
			next6 = next6.Next()
		}
		m.pairs = append(m.pairs, sentinelPair{sentinel: s, upstream: u})
	}
	return m, nil
}

// Sentinels returns the sentinel addresses in upstream order, for the OS's
// DNS configuration.
func (m *SentinelMap) Sentinels() []netip.Addr {
	out := make([]netip.Addr, len(m.pairs))
	for i, p := range m.pairs {
		out[i] = p.sentinel
	}
	return out
}

// Upstreams returns the upstreams in order.
func (m *SentinelMap) Upstreams() []Upstream {
	out := make([]Upstream, len(m.pairs))
	for i, p := range m.pairs {
		out[i] = p.upstream
	}
	return out
}

// Upstream returns the resolver behind a sentinel address. Linear: there
// are a handful of upstreams, and it keeps the order trivially.
func (m *SentinelMap) Upstream(sentinel netip.Addr) (Upstream, bool) {
	sentinel = sentinel.Unmap()
	for _, p := range m.pairs {
		if p.sentinel == sentinel {
			return p.upstream, true
		}
	}
	return Upstream{}, false
}

// Sentinel returns the sentinel address of an upstream.
func (m *SentinelMap) Sentinel(u Upstream) (netip.Addr, bool) {
	for _, p := range m.pairs {
		if p.upstream == u {
			return p.sentinel, true
		}
	}
	return netip.Addr{}, false
}
