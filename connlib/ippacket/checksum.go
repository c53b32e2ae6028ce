package ippacket

import "encoding/binary"

// Internet checksum helpers (RFC 1071, RFC 1624). Sums are accumulated as
// uint64 ones'-complement partial sums: adding 32-bit big-endian words and
// folding at the end gives the same result as adding 16-bit words, because
// 2^16 ≡ 1 (mod 2^16-1).

// Sum adds b to the partial sum acc and returns the new partial sum. An odd
// trailing byte is padded with zero, so only the last chunk of a message
// may have odd length.
func Sum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		w := binary.BigEndian.Uint64(b)
		acc += w >> 32
		acc += w & 0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// Fold folds a partial sum to 16 bits (not complemented).
func Fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = (acc >> 16) + (acc & 0xffff)
	}
	return uint16(acc)
}

// Checksum returns the Internet checksum of b (the complement of the
// folded sum).
func Checksum(b []byte) uint16 { return ^Fold(Sum(b, 0)) }

// PseudoHeaderSum returns the partial sum of the TCP/UDP/ICMPv6
// pseudo-header for the given raw addresses (4 or 16 bytes each),
// protocol and upper-layer length. The IPv4 and IPv6 layouts give the same
// ones'-complement sum.
func PseudoHeaderSum(src, dst []byte, proto uint8, length int) uint64 {
	acc := Sum(src, 0)
	acc = Sum(dst, acc)
	return acc + uint64(proto) + uint64(length)
}

// IPv4HeaderChecksum computes the checksum of an IPv4 header (its checksum
// field, bytes 10-11, is treated as zero).
func IPv4HeaderChecksum(hdr []byte) uint16 {
	acc := Sum(hdr[:10], 0)
	acc = Sum(hdr[12:], acc)
	return ^Fold(acc)
}

// UpdateChecksum16 returns checksum hc updated for one 16-bit word of the
// covered data changing from old to new (RFC 1624, eqn. 3:
// HC' = ~(~HC + ~m + m')).
func UpdateChecksum16(hc, old, new uint16) uint16 {
	acc := uint64(^hc) + uint64(^old) + uint64(new)
	return ^Fold(acc)
}

// UpdateChecksum returns checksum hc updated for the covered bytes old
// becoming new (equal, even lengths).
func UpdateChecksum(hc uint16, old, new []byte) uint16 {
	acc := uint64(^hc)
	for i := 0; i+1 < len(old) && i+1 < len(new); i += 2 {
		acc += uint64(^binary.BigEndian.Uint16(old[i:])) + uint64(binary.BigEndian.Uint16(new[i:]))
	}
	return ^Fold(acc)
}

// l4ChecksumOffset returns the offset of the transport checksum within the
// transport header and whether the protocol's checksum covers the
// pseudo-header.
func (p Packet) l4ChecksumOffset() (off int, pseudo, ok bool) {
	if p.flags&flagHasL4 == 0 {
		return 0, false, false
	}
	switch p.proto {
	case ProtoTCP:
		return 16, true, true
	case ProtoUDP:
		return 6, true, true
	case ProtoICMPv6:
		return 2, true, true
	case ProtoICMP:
		return 2, false, true
	}
	return 0, false, false
}

// FixChecksums recomputes every checksum of p from scratch: the IPv4
// header checksum and, for an unfragmented TCP/UDP/ICMP/ICMPv6 packet, the
// transport checksum (an IPv4 UDP checksum of 0, "none", is kept). It does
// nothing to transport checksums of fragments or quoted packets, whose
// payload is incomplete.
func (p Packet) FixChecksums() {
	if p.Is4() {
		hl := int(p.l4Start4())
		binary.BigEndian.PutUint16(p.b[10:12], IPv4HeaderChecksum(p.b[:hl]))
	}
	if p.flags&(flagFragment|flagQuoted) != 0 {
		return
	}
	off, _, ok := p.l4ChecksumOffset()
	if !ok {
		return
	}
	if p.proto == ProtoUDP && p.Is4() && binary.BigEndian.Uint16(p.b[int(p.l4)+6:]) == 0 {
		return
	}
	binary.BigEndian.PutUint16(p.b[int(p.l4)+off:], 0)
	binary.BigEndian.PutUint16(p.b[int(p.l4)+off:], p.computeL4Checksum())
}

// l4Start4 returns the IPv4 header length.
func (p Packet) l4Start4() uint16 { return uint16(p.b[0]&0x0f) * 4 }

// computeL4Checksum computes the transport checksum over the payload with
// the checksum field as it currently is (callers zero it first to compute,
// or leave it to verify: a correct packet then sums to 0).
func (p Packet) computeL4Checksum() uint16 {
	l4 := p.b[p.l4:]
	var acc uint64
	if _, pseudo, _ := p.l4ChecksumOffset(); pseudo {
		acc = PseudoHeaderSum(p.srcBytes(), p.dstBytes(), p.proto, len(l4))
	}
	c := ^Fold(Sum(l4, acc))
	if c == 0 && p.proto == ProtoUDP {
		c = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	return c
}

// ChecksumsValid reports whether p's IPv4 header checksum and (for an
// unfragmented, non-quoted packet) transport checksum are correct. An IPv4
// UDP checksum of 0 means "none" and is valid.
func (p Packet) ChecksumsValid() bool {
	if p.Is4() && Fold(Sum(p.b[:p.l4Start4()], 0)) != 0xffff {
		return false
	}
	if p.flags&(flagFragment|flagQuoted) != 0 {
		return true
	}
	off, pseudo, ok := p.l4ChecksumOffset()
	if !ok {
		return true
	}
	l4 := p.b[p.l4:]
	if p.proto == ProtoUDP && binary.BigEndian.Uint16(l4[off:]) == 0 {
		return p.Is4()
	}
	var acc uint64
	if pseudo {
		acc = PseudoHeaderSum(p.srcBytes(), p.dstBytes(), p.proto, len(l4))
	}
	return Fold(Sum(l4, acc)) == 0xffff
}
