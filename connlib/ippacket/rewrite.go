package ippacket

import (
	"encoding/binary"
	"net/netip"
)

// In-place rewriting for NAT (the gateway's DNS-resource proxy IP ↔ real
// IP translation). Every setter updates the affected checksums
// incrementally (RFC 1624), so the cost does not depend on the payload
// size, and a packet whose checksums were wrong stays wrong by the same
// amount (it is not "repaired" into looking valid).

// SetSrc rewrites the source address. a must be of p's family (an
// IPv4-mapped IPv6 address counts as IPv4).
func (p Packet) SetSrc(a netip.Addr) error {
	return p.setAddr(a, true)
}

// SetDst rewrites the destination address (same rules as SetSrc).
func (p Packet) SetDst(a netip.Addr) error {
	return p.setAddr(a, false)
}

func (p Packet) setAddr(a netip.Addr, src bool) error {
	var nb [16]byte
	var n []byte
	if p.Is4() {
		a = a.Unmap()
		if !a.Is4() {
			return ErrFamily
		}
		b4 := a.As4()
		copy(nb[:], b4[:])
		n = nb[:4]
	} else {
		if !a.Is6() || a.Is4In6() {
			return ErrFamily
		}
		nb = a.As16()
		n = nb[:]
	}
	old := p.dstBytes()
	if src {
		old = p.srcBytes()
	}
	if p.Is4() {
		hc := binary.BigEndian.Uint16(p.b[10:12])
		binary.BigEndian.PutUint16(p.b[10:12], UpdateChecksum(hc, old, n))
	}
	if off, pseudo, ok := p.l4ChecksumOffset(); ok && pseudo {
		p.updateL4Checksum(off, old, n)
	}
	copy(old, n)
	return nil
}

// updateL4Checksum applies an incremental update to the transport
// checksum at p.l4+off, if that field is inside the buffer (a quoted
// packet may not include it), honouring UDP's "0 = no checksum".
func (p Packet) updateL4Checksum(off int, old, new []byte) {
	at := int(p.l4) + off
	if at+2 > len(p.b) {
		return
	}
	hc := binary.BigEndian.Uint16(p.b[at:])
	if p.proto == ProtoUDP {
		if hc == 0 && p.Is4() {
			return // no checksum
		}
		c := UpdateChecksum(hc, old, new)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(p.b[at:], c)
		return
	}
	binary.BigEndian.PutUint16(p.b[at:], UpdateChecksum(hc, old, new))
}

// SetSrcPort rewrites the TCP/UDP source port.
func (p Packet) SetSrcPort(port uint16) error { return p.setPort(0, port) }

// SetDstPort rewrites the TCP/UDP destination port.
func (p Packet) SetDstPort(port uint16) error { return p.setPort(2, port) }

func (p Packet) setPort(at int, port uint16) error {
	if !p.hasPorts() {
		return ErrNoPorts
	}
	return p.setL4Word(at, port)
}

// SetICMPEchoID rewrites the identifier of an ICMP/ICMPv6 echo request or
// reply.
func (p Packet) SetICMPEchoID(id uint16) error {
	if !p.IsICMPEcho() {
		return ErrNotEcho
	}
	return p.setL4Word(4, id)
}

func (p Packet) setL4Word(at int, v uint16) error {
	var ob, nb [2]byte
	w := p.b[int(p.l4)+at:]
	copy(ob[:], w[:2])
	binary.BigEndian.PutUint16(nb[:], v)
	if off, _, ok := p.l4ChecksumOffset(); ok {
		p.updateL4Checksum(off, ob[:], nb[:])
	}
	copy(w[:2], nb[:])
	return nil
}
