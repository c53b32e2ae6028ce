// Package ippacket provides zero-copy, allocation-free views over IPv4 and
// IPv6 packets held in a []byte, checksum helpers, in-place address and port
// rewriting with checksum fix-up, and builders for ICMP errors.
//
// A Packet is a small value (a slice plus offsets) that refers to the
// caller's buffer; it never copies or retains anything else. Parse validates
// every length it later relies on, so no accessor can read out of bounds:
// malformed input yields an error, never a panic.
//
// Concurrency: a Packet is a view; reading one buffer from several
// goroutines is safe, rewriting it (Set*) while another goroutine reads the
// same buffer is a data race, as with any []byte.
package ippacket

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// IP protocol numbers this package understands.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// IPv6 extension headers that Parse walks over.
const (
	protoHopByHop  uint8 = 0
	protoRouting   uint8 = 43
	protoFragment  uint8 = 44
	protoAH        uint8 = 51
	protoNoNext    uint8 = 59
	protoDestOpts  uint8 = 60
	maxExtHeaders        = 8
	ipv4MinHdrLen        = 20
	ipv6HdrLen           = 40
	tcpMinHdrLen         = 20
	udpHdrLen            = 8
	icmpHdrLen           = 8
	quotedL4MinLen       = 8 // RFC 792: an ICMP error quotes at least 8 bytes of L4
)

// Sentinel errors returned by Parse.
var (
	ErrTooShort      = errors.New("ippacket: buffer too short for an IP header")
	ErrVersion       = errors.New("ippacket: not IPv4 or IPv6")
	ErrHeaderLength  = errors.New("ippacket: invalid IPv4 header length")
	ErrTotalLength   = errors.New("ippacket: IP length field does not match buffer")
	ErrExtHeaders    = errors.New("ippacket: malformed or too many IPv6 extension headers")
	ErrTruncatedL4   = errors.New("ippacket: truncated or malformed transport header")
	ErrNotICMPError  = errors.New("ippacket: not an ICMP error message")
	ErrFamily        = errors.New("ippacket: address family does not match packet")
	ErrNoPorts       = errors.New("ippacket: packet has no ports (not a first TCP/UDP fragment)")
	ErrNotEcho       = errors.New("ippacket: not an ICMP echo request or reply")
	ErrShortBuffer   = errors.New("ippacket: destination buffer too small")
	ErrNoICMPError   = errors.New("ippacket: no ICMP error may be sent for this packet")
	ErrInvalidSource = errors.New("ippacket: invalid source address for an ICMP error")
)

// Packet is a validated view of one IP packet. The zero value is not a
// valid packet; obtain one from Parse or ParseQuoted.
type Packet struct {
	b     []byte // the packet, trimmed to its IP total length
	l4    uint16 // offset of the transport header / upper-layer payload
	proto uint8  // upper-layer protocol (after IPv6 extension headers)
	flags uint8
}

const (
	flagHasL4     uint8 = 1 << iota // a validated TCP/UDP/ICMP header starts at l4
	flagFragment                    // part of a fragmented datagram
	flagLaterFrag                   // a fragment other than the first: no L4 header
	flagQuoted                      // parsed leniently from inside an ICMP error
)

// Parse validates b as one IPv4 or IPv6 packet and returns a view of it.
// Bytes after the IP total length are ignored (not part of the view). For
// TCP, UDP, ICMP and ICMPv6 the transport header must be complete; other
// protocols (and non-first fragments) are accepted without looking past
// the IP headers. Parse does not verify checksums (see ChecksumsValid):
// the receiving stack does that end to end, and NAT rewrites preserve a
// checksum's (in)validity.
func Parse(b []byte) (Packet, error) { return parse(b, false) }

// ParseQuoted parses the packet quoted inside an ICMP error: its IP length
// may exceed what was quoted, and only the first 8 bytes of the transport
// header (ports, or ICMP type/code/checksum/identifier) are required. Ports
// and identifiers read from such a packet are valid; its transport
// checksum field may be missing, in which case rewrites leave it alone.
func ParseQuoted(b []byte) (Packet, error) { return parse(b, true) }

func parse(b []byte, quoted bool) (Packet, error) {
	if len(b) < 1 {
		return Packet{}, ErrTooShort
	}
	var p Packet
	if quoted {
		p.flags |= flagQuoted
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4MinHdrLen {
			return Packet{}, ErrTooShort
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < ipv4MinHdrLen || ihl > len(b) {
			return Packet{}, ErrHeaderLength
		}
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if total < ihl {
			return Packet{}, ErrTotalLength
		}
		if total > len(b) {
			if !quoted {
				return Packet{}, ErrTotalLength
			}
			total = len(b)
		}
		p.b = b[:total]
		p.l4 = uint16(ihl)
		p.proto = b[9]
		frag := binary.BigEndian.Uint16(b[6:8])
		if frag&0x3fff != 0 { // MF set or offset != 0
			p.flags |= flagFragment
			if frag&0x1fff != 0 {
				p.flags |= flagLaterFrag
			}
		}
	case 6:
		if len(b) < ipv6HdrLen {
			return Packet{}, ErrTooShort
		}
		total := ipv6HdrLen + int(binary.BigEndian.Uint16(b[4:6]))
		if total == ipv6HdrLen && b[6] == protoHopByHop && !quoted && len(b) > ipv6HdrLen {
			// Payload length 0 followed by a hop-by-hop header is a
			// jumbogram (RFC 2675), which no tunnel with a 1280-byte MTU
			// carries.
			return Packet{}, ErrTotalLength
		}
		if total > len(b) {
			if !quoted {
				return Packet{}, ErrTotalLength
			}
			total = len(b)
		}
		p.b = b[:total]
		if err := p.walkExtHeaders(); err != nil {
			return Packet{}, err
		}
	default:
		return Packet{}, ErrVersion
	}
	if p.flags&flagLaterFrag != 0 {
		return p, nil
	}
	l4 := p.b[p.l4:]
	switch p.proto {
	case ProtoTCP:
		if quoted {
			if len(l4) < quotedL4MinLen {
				return Packet{}, ErrTruncatedL4
			}
			break
		}
		if len(l4) < tcpMinHdrLen {
			return Packet{}, ErrTruncatedL4
		}
		if off := int(l4[12]>>4) * 4; off < tcpMinHdrLen || off > len(l4) {
			return Packet{}, ErrTruncatedL4
		}
	case ProtoUDP:
		if len(l4) < udpHdrLen {
			return Packet{}, ErrTruncatedL4
		}
		if !quoted && p.flags&flagFragment == 0 {
			if ul := int(binary.BigEndian.Uint16(l4[4:6])); ul < udpHdrLen || ul > len(l4) {
				return Packet{}, ErrTruncatedL4
			}
		}
	case ProtoICMP, ProtoICMPv6:
		if (p.proto == ProtoICMP) != (p.Version() == 4) {
			return p, nil // ICMP in IPv6 or ICMPv6 in IPv4: just "other"
		}
		if len(l4) < icmpHdrLen {
			return Packet{}, ErrTruncatedL4
		}
	default:
		return p, nil
	}
	p.flags |= flagHasL4
	return p, nil
}

// walkExtHeaders skips IPv6 extension headers and sets p.l4, p.proto and
// the fragment flags.
func (p *Packet) walkExtHeaders() error {
	next := p.b[6]
	off := ipv6HdrLen
	for i := 0; ; i++ {
		var hlen int
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts:
			if len(p.b)-off < 2 {
				return ErrExtHeaders
			}
			hlen = (int(p.b[off+1]) + 1) * 8
		case protoAH:
			if len(p.b)-off < 2 {
				return ErrExtHeaders
			}
			hlen = (int(p.b[off+1]) + 2) * 4
		case protoFragment:
			if len(p.b)-off < 8 {
				return ErrExtHeaders
			}
			hlen = 8
			p.flags |= flagFragment
			if binary.BigEndian.Uint16(p.b[off+2:off+4])&0xfff8 != 0 {
				p.flags |= flagLaterFrag
			}
		default:
			p.l4 = uint16(off)
			p.proto = next
			return nil
		}
		if i >= maxExtHeaders || hlen > len(p.b)-off {
			return ErrExtHeaders
		}
		next = p.b[off]
		off += hlen
	}
}

// Bytes returns the packet (trimmed to its IP length), aliasing the buffer
// given to Parse.
func (p Packet) Bytes() []byte { return p.b }

// Len returns the packet's length in bytes.
func (p Packet) Len() int { return len(p.b) }

// Version returns 4 or 6.
func (p Packet) Version() int { return int(p.b[0] >> 4) }

// Is4 reports whether p is an IPv4 packet.
func (p Packet) Is4() bool { return p.b[0]>>4 == 4 }

// Src returns the source address.
func (p Packet) Src() netip.Addr {
	if p.Is4() {
		return netip.AddrFrom4([4]byte(p.b[12:16]))
	}
	return netip.AddrFrom16([16]byte(p.b[8:24]))
}

// Dst returns the destination address.
func (p Packet) Dst() netip.Addr {
	if p.Is4() {
		return netip.AddrFrom4([4]byte(p.b[16:20]))
	}
	return netip.AddrFrom16([16]byte(p.b[24:40]))
}

// srcBytes and dstBytes return the raw address bytes.
func (p Packet) srcBytes() []byte {
	if p.Is4() {
		return p.b[12:16]
	}
	return p.b[8:24]
}

func (p Packet) dstBytes() []byte {
	if p.Is4() {
		return p.b[16:20]
	}
	return p.b[24:40]
}

// HopLimit returns the IPv4 TTL or the IPv6 hop limit.
func (p Packet) HopLimit() uint8 {
	if p.Is4() {
		return p.b[8]
	}
	return p.b[7]
}

// Protocol returns the upper-layer protocol number: for IPv6, the next
// header after the extension headers (ESP, 59 "no next header" and unknown
// values are returned as they are).
func (p Packet) Protocol() uint8 { return p.proto }

// HasL4 reports whether a TCP, UDP, ICMP (IPv4) or ICMPv6 (IPv6) header is
// present and validated, so that ports or ICMP fields can be read.
func (p Packet) HasL4() bool { return p.flags&flagHasL4 != 0 }

// IsFragment reports whether p is a fragment of a larger datagram.
func (p Packet) IsFragment() bool { return p.flags&flagFragment != 0 }

// IsLaterFragment reports whether p is a fragment other than the first, so
// it carries no transport header at all.
func (p Packet) IsLaterFragment() bool { return p.flags&flagLaterFrag != 0 }

// Payload returns the bytes after the IP header(s): the transport header
// and its payload, or for a later fragment the fragment's data.
func (p Packet) Payload() []byte { return p.b[p.l4:] }

// L4Offset returns the offset of Payload within Bytes.
func (p Packet) L4Offset() int { return int(p.l4) }

// hasPorts reports whether a TCP or UDP header is present.
func (p Packet) hasPorts() bool {
	return p.flags&flagHasL4 != 0 && (p.proto == ProtoTCP || p.proto == ProtoUDP)
}

// isICMP reports whether a validated ICMP header of p's family is present.
func (p Packet) isICMP() bool {
	return p.flags&flagHasL4 != 0 && (p.proto == ProtoICMP || p.proto == ProtoICMPv6)
}

// SrcPort returns the TCP/UDP source port, or 0 when there is none.
func (p Packet) SrcPort() uint16 {
	if !p.hasPorts() {
		return 0
	}
	return binary.BigEndian.Uint16(p.b[p.l4:])
}

// DstPort returns the TCP/UDP destination port, or 0 when there is none.
func (p Packet) DstPort() uint16 {
	if !p.hasPorts() {
		return 0
	}
	return binary.BigEndian.Uint16(p.b[p.l4+2:])
}

// IsICMP reports whether p carries an ICMP (IPv4) or ICMPv6 (IPv6) header.
func (p Packet) IsICMP() bool { return p.isICMP() }

// ICMPType returns the ICMP/ICMPv6 type, or 0 when p is not ICMP (check
// IsICMP: 0 is also echo reply in ICMPv4).
func (p Packet) ICMPType() uint8 {
	if !p.isICMP() {
		return 0
	}
	return p.b[p.l4]
}

// ICMPCode returns the ICMP/ICMPv6 code, or 0 when p is not ICMP.
func (p Packet) ICMPCode() uint8 {
	if !p.isICMP() {
		return 0
	}
	return p.b[p.l4+1]
}

// ICMP types used below.
const (
	icmp4EchoReply   = 0
	icmp4Unreachable = 3
	icmp4Echo        = 8
	icmp6Unreachable = 1
	icmp6TooBig      = 2
	icmp6Echo        = 128
	icmp6EchoReply   = 129
)

// IsICMPEcho reports whether p is an ICMP or ICMPv6 echo request or reply.
func (p Packet) IsICMPEcho() bool {
	if !p.isICMP() {
		return false
	}
	t := p.b[p.l4]
	if p.proto == ProtoICMP {
		return t == icmp4Echo || t == icmp4EchoReply
	}
	return t == icmp6Echo || t == icmp6EchoReply
}

// ICMPEchoID returns the identifier of an echo request or reply.
func (p Packet) ICMPEchoID() (id uint16, ok bool) {
	if !p.IsICMPEcho() {
		return 0, false
	}
	return binary.BigEndian.Uint16(p.b[p.l4+4:]), true
}

// IsICMPError reports whether p is an ICMP error message (IPv4 types 3, 4,
// 5, 11, 12; ICMPv6 types 1-127).
func (p Packet) IsICMPError() bool {
	if !p.isICMP() {
		return false
	}
	t := p.b[p.l4]
	if p.proto == ProtoICMP {
		switch t {
		case 3, 4, 5, 11, 12:
			return true
		}
		return false
	}
	return t < 128
}

// ICMPErrorQuote parses the packet quoted by an ICMP error (see
// ParseQuoted). The returned Packet aliases p's buffer, so rewriting it
// changes p; recompute p's ICMP checksum afterwards (FixChecksums).
func (p Packet) ICMPErrorQuote() (Packet, error) {
	if !p.IsICMPError() {
		return Packet{}, ErrNotICMPError
	}
	q, err := ParseQuoted(p.b[int(p.l4)+icmpHdrLen:])
	if err != nil {
		return Packet{}, err
	}
	if q.Version() != p.Version() {
		return Packet{}, ErrFamily
	}
	return q, nil
}
