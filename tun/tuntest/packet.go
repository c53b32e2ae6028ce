package tuntest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// IP protocol numbers the builders and Parse understand.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// ICMP echo types for IPv4 and IPv6.
const (
	icmp4EchoRequest = 8
	icmp4EchoReply   = 0
	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
)

// TCP flag bits for TCP.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Header lengths of the packets the builders produce (no IP options, no
// extension headers, no TCP options).
const (
	IPv4HeaderLen = 20
	IPv6HeaderLen = 40
	UDPHeaderLen  = 8
	TCPHeaderLen  = 20
	ICMPHeaderLen = 8
)

// IPHeaderLen is the header length the builders use for addr's family.
func IPHeaderLen(addr netip.Addr) int {
	if addr.Is4() {
		return IPv4HeaderLen
	}
	return IPv6HeaderLen
}

// UDP returns an IPv4 or IPv6 UDP packet from src to dst carrying payload,
// with valid IP and UDP checksums. src and dst must be of the same family.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	return AppendUDP(nil, src, dst, payload)
}

// AppendUDP is UDP appending to b; it allocates only if b lacks capacity.
func AppendUDP(b []byte, src, dst netip.AddrPort, payload []byte) []byte {
	start := len(b)
	b, l4 := appendIP(b, src.Addr(), dst.Addr(), ProtoUDP, UDPHeaderLen+len(payload))
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(UDPHeaderLen+len(payload)))
	b = append(b, 0, 0)
	b = append(b, payload...)
	sum := transportChecksum(src.Addr(), dst.Addr(), ProtoUDP, b[start+l4:])
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(b[start+l4+6:], sum)
	return b
}

// TCP returns an IPv4 or IPv6 TCP segment from src to dst with the given
// sequence and acknowledgement numbers, flags (TCPSyn, ...) and payload,
// window 65535, valid checksums and no options.
func TCP(src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload []byte) []byte {
	return AppendTCP(nil, src, dst, seq, ack, flags, payload)
}

// AppendTCP is TCP appending to b.
func AppendTCP(b []byte, src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload []byte) []byte {
	start := len(b)
	b, l4 := appendIP(b, src.Addr(), dst.Addr(), ProtoTCP, TCPHeaderLen+len(payload))
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, ack)
	b = append(b, (TCPHeaderLen/4)<<4, flags)
	b = append(b, 0xff, 0xff, 0, 0, 0, 0) // window, checksum, urgent pointer
	b = append(b, payload...)
	sum := transportChecksum(src.Addr(), dst.Addr(), ProtoTCP, b[start+l4:])
	binary.BigEndian.PutUint16(b[start+l4+16:], sum)
	return b
}

// ICMPEcho returns an ICMP (IPv4) or ICMPv6 (IPv6) echo request, or echo
// reply when reply is set, from src to dst with the given identifier,
// sequence number and payload, with valid checksums.
func ICMPEcho(src, dst netip.Addr, reply bool, id, seq uint16, payload []byte) []byte {
	return AppendICMPEcho(nil, src, dst, reply, id, seq, payload)
}

// AppendICMPEcho is ICMPEcho appending to b.
func AppendICMPEcho(b []byte, src, dst netip.Addr, reply bool, id, seq uint16, payload []byte) []byte {
	start := len(b)
	proto := uint8(ProtoICMP)
	typ := uint8(icmp4EchoRequest)
	if reply {
		typ = icmp4EchoReply
	}
	if src.Is6() {
		proto = ProtoICMPv6
		typ = icmp6EchoRequest
		if reply {
			typ = icmp6EchoReply
		}
	}
	b, l4 := appendIP(b, src, dst, proto, ICMPHeaderLen+len(payload))
	b = append(b, typ, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, payload...)
	var sum uint16
	if proto == ProtoICMPv6 {
		sum = transportChecksum(src, dst, proto, b[start+l4:])
	} else {
		sum = ^foldChecksum(sumBytes(0, b[start+l4:]))
	}
	binary.BigEndian.PutUint16(b[start+l4+2:], sum)
	return b
}

// appendIP appends an IPv4 or IPv6 header for a payload of l4len bytes and
// returns the offset of the payload relative to the header's start.
func appendIP(b []byte, src, dst netip.Addr, proto uint8, l4len int) ([]byte, int) {
	if src.Is4() {
		start := len(b)
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(IPv4HeaderLen+l4len))
		b = append(b, 0, 0, 0x40, 0) // id 0, don't fragment
		b = append(b, 64, proto, 0, 0)
		s, d := src.As4(), dst.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		binary.BigEndian.PutUint16(b[start+10:], ^foldChecksum(sumBytes(0, b[start:start+IPv4HeaderLen])))
		return b, IPv4HeaderLen
	}
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(l4len))
	b = append(b, proto, 64)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	return b, IPv6HeaderLen
}

func sumBytes(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func foldChecksum(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// transportChecksum is the Internet checksum of seg with the pseudo-header
// for src, dst and proto (RFC 768, RFC 793, RFC 8200 §8.1).
func transportChecksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	var sum uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum = sumBytes(sum, s[:])
		sum = sumBytes(sum, d[:])
	} else {
		s, d := src.As16(), dst.As16()
		sum = sumBytes(sum, s[:])
		sum = sumBytes(sum, d[:])
	}
	sum += uint32(proto)
	sum += uint32(len(seg))
	return ^foldChecksum(sumBytes(sum, seg))
}

// Packet is a parsed IP packet as far as the suite needs it.
type Packet struct {
	Proto uint8          // ProtoUDP, ProtoTCP, ProtoICMP or ProtoICMPv6
	Src   netip.AddrPort // port 0 for ICMP
	Dst   netip.AddrPort // port 0 for ICMP
	Len   int            // total IP packet length

	TCPFlags        uint8  // TCP only
	TCPSeq, TCPAck  uint32 // TCP only
	ICMPType        uint8  // ICMP only
	ICMPID, ICMPSeq uint16 // ICMP echo only

	Payload []byte // transport payload, aliasing the parsed packet
}

// Errors returned by Parse.
var (
	ErrShort       = errors.New("tuntest: packet too short")
	ErrVersion     = errors.New("tuntest: not an IPv4 or IPv6 packet")
	ErrLength      = errors.New("tuntest: length field does not match packet size")
	ErrChecksum    = errors.New("tuntest: bad checksum")
	ErrUnsupported = errors.New("tuntest: unsupported packet (fragment, options or protocol)")
)

// Parse parses a complete IPv4 or IPv6 packet carrying UDP, TCP, ICMP or
// ICMPv6 and verifies its length fields and every checksum. It accepts IPv4
// options but not IPv6 extension headers or fragments. It never panics.
func Parse(pkt []byte) (Packet, error) {
	var p Packet
	if len(pkt) < 1 {
		return p, ErrShort
	}
	var src, dst netip.Addr
	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < IPv4HeaderLen {
			return p, ErrShort
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if ihl < IPv4HeaderLen || total < ihl || total != len(pkt) {
			return p, ErrLength
		}
		if foldChecksum(sumBytes(0, pkt[:ihl])) != 0xffff {
			return p, fmt.Errorf("%w: IPv4 header", ErrChecksum)
		}
		if binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
			return p, fmt.Errorf("%w: IPv4 fragment", ErrUnsupported)
		}
		p.Proto = pkt[9]
		src = netip.AddrFrom4([4]byte(pkt[12:16]))
		dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		l4 = pkt[ihl:]
	case 6:
		if len(pkt) < IPv6HeaderLen {
			return p, ErrShort
		}
		if int(binary.BigEndian.Uint16(pkt[4:]))+IPv6HeaderLen != len(pkt) {
			return p, ErrLength
		}
		p.Proto = pkt[6]
		src = netip.AddrFrom16([16]byte(pkt[8:24]))
		dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		l4 = pkt[IPv6HeaderLen:]
	default:
		return p, ErrVersion
	}
	p.Len = len(pkt)
	switch p.Proto {
	case ProtoUDP:
		if len(l4) < UDPHeaderLen {
			return p, ErrShort
		}
		if int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
			return p, ErrLength
		}
		if c := binary.BigEndian.Uint16(l4[6:]); (c != 0 || src.Is6()) && transportChecksum(src, dst, p.Proto, l4) != 0 {
			return p, fmt.Errorf("%w: UDP", ErrChecksum)
		}
		p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:]))
		p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))
		p.Payload = l4[UDPHeaderLen:]
	case ProtoTCP:
		if len(l4) < TCPHeaderLen {
			return p, ErrShort
		}
		off := int(l4[12]>>4) * 4
		if off < TCPHeaderLen || off > len(l4) {
			return p, ErrLength
		}
		if transportChecksum(src, dst, p.Proto, l4) != 0 {
			return p, fmt.Errorf("%w: TCP", ErrChecksum)
		}
		p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:]))
		p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))
		p.TCPSeq = binary.BigEndian.Uint32(l4[4:])
		p.TCPAck = binary.BigEndian.Uint32(l4[8:])
		p.TCPFlags = l4[13]
		p.Payload = l4[off:]
	case ProtoICMP, ProtoICMPv6:
		if (p.Proto == ProtoICMP) != src.Is4() {
			return p, fmt.Errorf("%w: ICMP version mismatch", ErrUnsupported)
		}
		if len(l4) < ICMPHeaderLen {
			return p, ErrShort
		}
		var ok bool
		if p.Proto == ProtoICMP {
			ok = foldChecksum(sumBytes(0, l4)) == 0xffff
		} else {
			ok = transportChecksum(src, dst, p.Proto, l4) == 0
		}
		if !ok {
			return p, fmt.Errorf("%w: ICMP", ErrChecksum)
		}
		p.Src = netip.AddrPortFrom(src, 0)
		p.Dst = netip.AddrPortFrom(dst, 0)
		p.ICMPType = l4[0]
		p.ICMPID = binary.BigEndian.Uint16(l4[4:])
		p.ICMPSeq = binary.BigEndian.Uint16(l4[6:])
		p.Payload = l4[ICMPHeaderLen:]
	default:
		return p, fmt.Errorf("%w: protocol %d", ErrUnsupported, p.Proto)
	}
	return p, nil
}

// IsEchoRequest reports whether p is an ICMP or ICMPv6 echo request.
func (p *Packet) IsEchoRequest() bool {
	return (p.Proto == ProtoICMP && p.ICMPType == icmp4EchoRequest) ||
		(p.Proto == ProtoICMPv6 && p.ICMPType == icmp6EchoRequest)
}

// IsEchoReply reports whether p is an ICMP or ICMPv6 echo reply.
func (p *Packet) IsEchoReply() bool {
	return (p.Proto == ProtoICMP && p.ICMPType == icmp4EchoReply) ||
		(p.Proto == ProtoICMPv6 && p.ICMPType == icmp6EchoReply)
}
