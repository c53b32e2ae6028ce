package acl

import (
	"cmp"
	"slices"

	"github.com/gozone/gozone/connlib/ippacket"
)

// Protocol is a filter's protocol.
type Protocol uint8

const (
	TCP Protocol = iota + 1
	UDP
	ICMP // ICMP for IPv4 and ICMPv6 for IPv6, every message type
)

// Filter permits one protocol, for TCP and UDP restricted to the
// destination ports PortStart..PortEnd (inclusive). The portal's missing
// bounds mean 0 and 65535, and a single port is start == end; the caller
// fills them in. A TCP/UDP filter with PortEnd < PortStart permits
// nothing. Ports are ignored for ICMP.
type Filter struct {
	Protocol           Protocol
	PortStart, PortEnd uint16
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi uint16 }

// filterSet is a compiled, immutable list of filters: per resource, a
// union of allowed TCP and UDP port ranges and an ICMP bool; an empty
// list permits everything (reference §6.1).
type filterSet struct {
	all      bool
	icmp     bool
	tcp, udp []portRange // sorted, merged
}

var permitAll = &filterSet{all: true}

func compileFilters(fs []Filter) *filterSet {
	if len(fs) == 0 {
		return permitAll
	}
	f := &filterSet{}
	for _, x := range fs {
		switch x.Protocol {
		case TCP:
			if x.PortEnd >= x.PortStart {
				f.tcp = append(f.tcp, portRange{x.PortStart, x.PortEnd})
			}
		case UDP:
			if x.PortEnd >= x.PortStart {
				f.udp = append(f.udp, portRange{x.PortStart, x.PortEnd})
			}
		case ICMP:
			f.icmp = true
		}
	}
	f.tcp, f.udp = mergeRanges(f.tcp), mergeRanges(f.udp)
	return f
}

func mergeRanges(rs []portRange) []portRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b portRange) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint32(r.lo) <= uint32(last.hi)+1 {
			last.hi = max(last.hi, r.hi)
		} else {
			out = append(out, r)
		}
	}
	return out
}

func inRanges(rs []portRange, port uint16) bool {
	for _, r := range rs { // short, sorted: stop at the first range above
		if port < r.lo {
			return false
		}
		if port <= r.hi {
			return true
		}
	}
	return false
}

// allows reports whether f permits p. A fragment without a transport
// header can only pass a permit-all set: its ports are unknown.
func (f *filterSet) allows(p ippacket.Packet) bool {
	if f.all {
		return true
	}
	if !p.HasL4() {
		return false
	}
	switch p.Protocol() {
	case ippacket.ProtoTCP:
		return inRanges(f.tcp, p.DstPort())
	case ippacket.ProtoUDP:
		return inRanges(f.udp, p.DstPort())
	case ippacket.ProtoICMP, ippacket.ProtoICMPv6:
		return f.icmp // HasL4 guarantees the family matches
	}
	return false
}
