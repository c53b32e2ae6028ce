package ippacket

import (
	"encoding/binary"
	"net/netip"
)

// FiveTuple identifies a flow. It is comparable and can be used as a map
// key. For TCP and UDP the ports are the transport ports; for ICMP/ICMPv6
// echo requests and replies both ports hold the echo identifier, so the
// reply's tuple is exactly the Reverse of the request's; for everything
// else (other ICMP messages, other protocols, later fragments) both ports
// are 0 and the flow is the address pair plus protocol.
type FiveTuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

// Reverse returns the tuple of the opposite direction.
func (t FiveTuple) Reverse() FiveTuple {
	return FiveTuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}

// Tuple returns p's flow tuple (see FiveTuple for the ICMP convention).
func (p Packet) Tuple() FiveTuple {
	t := FiveTuple{Src: p.Src(), Dst: p.Dst(), Proto: p.proto}
	if p.hasPorts() {
		t.SrcPort = binary.BigEndian.Uint16(p.b[p.l4:])
		t.DstPort = binary.BigEndian.Uint16(p.b[p.l4+2:])
	} else if id, ok := p.ICMPEchoID(); ok {
		t.SrcPort, t.DstPort = id, id
	}
	return t
}

// Hash returns a fast, seeded, non-cryptographic hash of the tuple.
func (t FiveTuple) Hash(seed uint64) uint64 {
	h := seed ^ uint64(t.Proto)<<32 ^ uint64(t.SrcPort)<<16 ^ uint64(t.DstPort)
	h = hashAddr(h, t.Src)
	h = hashAddr(h, t.Dst)
	return fmix64(h)
}

func hashAddr(h uint64, a netip.Addr) uint64 {
	if a.Is4() {
		b := a.As4()
		return mix(h, uint64(binary.BigEndian.Uint32(b[:])))
	}
	b := a.As16()
	h = mix(h, binary.BigEndian.Uint64(b[:8]))
	return mix(h, binary.BigEndian.Uint64(b[8:]))
}

// FlowHash returns a fast, seeded, non-cryptographic hash of p's flow:
// the 5-tuple for TCP and UDP, the address pair and protocol otherwise (so
// that every packet of a non-port flow, including fragments, lands on the
// same queue). It reads the raw header bytes and never allocates. The
// hash is direction-sensitive. Use a random seed where peers could pick
// addresses to collide flows on purpose.
func (p Packet) FlowHash(seed uint64) uint64 {
	h := seed ^ uint64(p.proto)<<32
	if p.hasPorts() {
		h ^= uint64(binary.BigEndian.Uint32(p.b[p.l4:]))
	}
	if p.Is4() {
		h = mix(h, binary.BigEndian.Uint64(p.b[12:20]))
	} else {
		h = mix(h, binary.BigEndian.Uint64(p.b[8:16]))
		h = mix(h, binary.BigEndian.Uint64(p.b[16:24]))
		h = mix(h, binary.BigEndian.Uint64(p.b[24:32]))
		h = mix(h, binary.BigEndian.Uint64(p.b[32:40]))
	}
	return fmix64(h)
}

func mix(h, w uint64) uint64 {
	h ^= w
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
}

// fmix64 is MurmurHash3's 64-bit finaliser: full avalanche of all bits.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
