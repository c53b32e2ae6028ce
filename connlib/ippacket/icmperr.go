package ippacket

import (
	"encoding/binary"
	"net/netip"
)

// Unreachable selects the kind of ICMP destination-unreachable error.
type Unreachable uint8

const (
	// Prohibited: communication administratively prohibited (ICMPv4 type
	// 3 code 13, ICMPv6 type 1 code 1). The gateway's answer to a packet
	// its filters drop.
	Prohibited Unreachable = iota
	// HostUnreachable: ICMPv4 type 3 code 1, ICMPv6 type 1 code 3
	// (address unreachable).
	HostUnreachable
	// NetUnreachable: ICMPv4 type 3 code 0, ICMPv6 type 1 code 0 (no route
	// to destination). Firezone answers internet-resource rejects and DNS
	// proxy IPs without a real address of that family with it.
	NetUnreachable
)

func (k Unreachable) codes(v4 bool) (typ, code uint8) {
	if v4 {
		switch k {
		case HostUnreachable:
			return icmp4Unreachable, 1
		case NetUnreachable:
			return icmp4Unreachable, 0
		default:
			return icmp4Unreachable, 13
		}
	}
	switch k {
	case HostUnreachable:
		return icmp6Unreachable, 3
	case NetUnreachable:
		return icmp6Unreachable, 0
	default:
		return icmp6Unreachable, 1
	}
}

// Sizes that bound the quoted original packet.
const (
	// MaxICMPv4ErrorLen follows RFC 1812 §4.3.2.3: quote as much as fits
	// in 576 bytes.
	MaxICMPv4ErrorLen = 576
	// MaxICMPv6ErrorLen is RFC 4443 §2.4(c): as much as fits in the IPv6
	// minimum MTU.
	MaxICMPv6ErrorLen = 1280
	// ErrorHopLimit is the TTL / hop limit of generated errors.
	ErrorHopLimit = 64
)

// ICMPErrorLen returns the length of the error BuildUnreachable would
// write for orig.
func ICMPErrorLen(orig Packet) int {
	if orig.Is4() {
		return min(ipv4MinHdrLen+icmpHdrLen+orig.Len(), MaxICMPv4ErrorLen)
	}
	return min(ipv6HdrLen+icmpHdrLen+orig.Len(), MaxICMPv6ErrorLen)
}

// BuildUnreachable writes into dst an ICMP (IPv4) or ICMPv6 (IPv6)
// destination-unreachable error about orig, addressed to orig's source and
// quoting orig's leading bytes (RFC 792, RFC 1812, RFC 4443), and returns
// its length. The error's source is src, or orig's destination when src
// is the zero Addr (so the sender's stack attributes it to the peer it
// tried to reach). dst must have room for ICMPErrorLen(orig) bytes; it
// must not overlap orig. It never allocates.
//
// Following RFC 1122 §3.2.2 and RFC 4443 §2.4(e), no error is built
// (ErrNoICMPError) for ICMP error messages, for fragments other than the
// first, and for packets whose source is unspecified, multicast or the
// limited broadcast address or whose destination is multicast or
// broadcast.
func BuildUnreachable(dst []byte, orig Packet, kind Unreachable, src netip.Addr) (int, error) {
	if len(orig.b) == 0 {
		return 0, ErrTooShort
	}
	if orig.IsICMPError() || orig.IsLaterFragment() {
		return 0, ErrNoICMPError
	}
	osrc, odst := orig.Src(), orig.Dst()
	if osrc.IsUnspecified() || osrc.IsMulticast() || odst.IsMulticast() || isBroadcast(osrc) || isBroadcast(odst) {
		return 0, ErrNoICMPError
	}
	if !src.IsValid() {
		src = odst
	}
	v4 := orig.Is4()
	if v4 {
		src = src.Unmap()
	}
	if v4 != src.Is4() || src.Is4In6() || src.IsUnspecified() || src.IsMulticast() {
		return 0, ErrInvalidSource
	}
	n := ICMPErrorLen(orig)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	typ, code := kind.codes(v4)
	var icmp []byte
	if v4 {
		h := dst[:ipv4MinHdrLen]
		h[0] = 0x45
		h[1] = 0
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		binary.BigEndian.PutUint32(h[4:], 0) // id 0, no flags: never fragmented at 576
		h[8] = ErrorHopLimit
		h[9] = ProtoICMP
		h[10], h[11] = 0, 0
		s4, d4 := src.As4(), osrc.As4()
		copy(h[12:16], s4[:])
		copy(h[16:20], d4[:])
		binary.BigEndian.PutUint16(h[10:], IPv4HeaderChecksum(h))
		icmp = dst[ipv4MinHdrLen:n]
	} else {
		h := dst[:ipv6HdrLen]
		binary.BigEndian.PutUint32(h[0:], 6<<28)
		binary.BigEndian.PutUint16(h[4:], uint16(n-ipv6HdrLen))
		h[6] = ProtoICMPv6
		h[7] = ErrorHopLimit
		s16, d16 := src.As16(), osrc.As16()
		copy(h[8:24], s16[:])
		copy(h[24:40], d16[:])
		icmp = dst[ipv6HdrLen:n]
	}
	icmp[0], icmp[1] = typ, code
	clear(icmp[2:icmpHdrLen]) // checksum, then "unused" must be zero
	copy(icmp[icmpHdrLen:], orig.b)
	var acc uint64
	if !v4 {
		acc = PseudoHeaderSum(dst[8:24], dst[24:40], ProtoICMPv6, len(icmp))
	}
	binary.BigEndian.PutUint16(icmp[2:], ^Fold(Sum(icmp, acc)))
	return n, nil
}

func isBroadcast(a netip.Addr) bool {
	return a.Is4() && a.As4() == [4]byte{255, 255, 255, 255}
}

// BuildPacketTooBig writes into dst the error that tells orig's sender
// its packet exceeded mtu on the path: ICMPv4 type 3 code 4
// (fragmentation needed, next-hop MTU in bytes 6-7) or ICMPv6 type 2
// (MTU in bytes 4-7), quoting orig like BuildUnreachable, and returns its
// length. For IPv4 the caller should only send it when orig has DF set.
// Same refusals and source rules as BuildUnreachable.
func BuildPacketTooBig(dst []byte, orig Packet, mtu uint16, src netip.Addr) (int, error) {
	n, err := BuildUnreachable(dst, orig, Prohibited, src)
	if err != nil {
		return 0, err
	}
	var icmp []byte
	var acc uint64
	if orig.Is4() {
		icmp = dst[ipv4MinHdrLen:n]
		icmp[0], icmp[1] = icmp4Unreachable, 4
		binary.BigEndian.PutUint16(icmp[4:], 0)
		binary.BigEndian.PutUint16(icmp[6:], mtu)
	} else {
		icmp = dst[ipv6HdrLen:n]
		icmp[0], icmp[1] = icmp6TooBig, 0
		binary.BigEndian.PutUint32(icmp[4:], uint32(mtu))
		acc = PseudoHeaderSum(dst[8:24], dst[24:40], ProtoICMPv6, len(icmp))
	}
	binary.BigEndian.PutUint16(icmp[2:], 0)
	binary.BigEndian.PutUint16(icmp[2:], ^Fold(Sum(icmp, acc)))
	return n, nil
}
