package ippacket

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Test packet construction, written independently of the code under test
// where it matters: checksums are computed with gVisor's implementation.

func ap(s string) netip.Addr { return netip.MustParseAddr(s) }

func tcpSeg(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 12345)
	b[12] = 5 << 4
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], payload)
	return b
}

func udpSeg(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

func icmpMsg(typ, code uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	return b
}

// mk builds an IPv4 or IPv6 packet with correct checksums (via gVisor).
// ext, for IPv6 only, is a chain of raw extension headers whose first
// next-header byte is patched to chain to the next; the last chains to
// proto.
func mk(t testing.TB, src, dst netip.Addr, proto uint8, l4 []byte, ext ...[]byte) []byte {
	t.Helper()
	var b []byte
	if src.Is4() {
		b = make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[4:], 0x1234)
		b[8] = 64
		b[9] = proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], l4)
		binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:20], 0))
	} else {
		var extLen int
		for _, e := range ext {
			extLen += len(e)
		}
		b = make([]byte, 40+extLen+len(l4))
		binary.BigEndian.PutUint32(b[0:], 6<<28)
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		b[7] = 64
		s, d := src.As16(), dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		prev := 6
		off := 40
		for _, e := range ext {
			copy(b[off:], e)
			off += len(e)
		}
		off = 40
		for _, e := range ext {
			b[prev] = extType(e)
			prev = off
			off += len(e)
		}
		b[prev] = proto
		copy(b[off:], l4)
	}
	fixL4(t, b, proto, len(b)-len(l4))
	return b
}

// extType infers an extension header's type from a marker stored in our
// test headers' otherwise-unused last byte.
func extType(e []byte) uint8 { return e[len(e)-1] }

func hopByHop() []byte { return []byte{0, 0, 1, 4, 0, 0, 0, 0 /* marker */} } // type 0
func destOpts() []byte { return []byte{0, 0, 1, 4, 0, 0, 0, 60} }
func fragHdr(offset uint16, more bool) []byte {
	b := []byte{0, 0, 0, 0, 0, 0, 0, 44}
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

func fixL4(t testing.TB, b []byte, proto uint8, l4off int) {
	l4 := b[l4off:]
	var off int
	switch proto {
	case ProtoTCP:
		off = 16
	case ProtoUDP:
		off = 6
	case ProtoICMP, ProtoICMPv6:
		off = 2
	default:
		return
	}
	if len(l4) < off+2 {
		return // later fragment or deliberately truncated
	}
	binary.BigEndian.PutUint16(l4[off:], 0)
	var init uint16
	if proto != ProtoICMP {
		init = pseudo(b, proto, len(l4))
	}
	c := ^checksum.Checksum(l4, init)
	if c == 0 && proto == ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

func pseudo(b []byte, proto uint8, n int) uint16 {
	var s, d tcpip.Address
	if b[0]>>4 == 4 {
		s, d = tcpip.AddrFromSlice(b[12:16]), tcpip.AddrFromSlice(b[16:20])
	} else {
		s, d = tcpip.AddrFromSlice(b[8:24]), tcpip.AddrFromSlice(b[24:40])
	}
	return header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), s, d, uint16(n))
}

// oracleValid checks p's checksums with gVisor.
func oracleValid(t testing.TB, p Packet) bool {
	t.Helper()
	b := p.Bytes()
	if p.Is4() && !header.IPv4(b).IsChecksumValid() {
		return false
	}
	if !p.HasL4() || p.IsFragment() {
		return true
	}
	l4 := p.Payload()
	var init uint16
	if p.Protocol() != ProtoICMP {
		init = pseudo(b, p.Protocol(), len(l4))
	}
	if p.Protocol() == ProtoUDP && p.Is4() && binary.BigEndian.Uint16(l4[6:]) == 0 {
		return true
	}
	return checksum.Checksum(l4, init) == 0xffff
}

func mustParse(t testing.TB, b []byte) Packet {
	t.Helper()
	p, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}
