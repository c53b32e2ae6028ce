package ippacket

import (
	"encoding/binary"
	"net/netip"
)

// Firezone's in-tunnel peer-to-peer control protocol rides in IPv6 packets
// that no real stack would send: source and destination ::, next header
// 0xFF (reserved), hop limit 0, then an 8-byte header whose first byte is
// the event type, then a JSON payload.

// P2PControlProto is the IPv6 next header of control packets.
const P2PControlProto uint8 = 0xff

// P2PControlHeaderLen is the length of the control header after the IPv6
// header.
const P2PControlHeaderLen = 8

// P2P control event types.
const (
	P2PAssignedIPs  uint8 = 0 // client → gateway: proxy IPs of a DNS resource
	P2PDomainStatus uint8 = 1 // gateway → client
	P2PGoodbye      uint8 = 2 // either side, on close
)

// P2PControl reports whether p is a p2p control packet and returns its
// event type and payload (aliasing p's buffer).
func (p Packet) P2PControl() (event uint8, payload []byte, ok bool) {
	if p.Is4() || p.proto != P2PControlProto || p.l4 != ipv6HdrLen || p.b[7] != 0 {
		return 0, nil, false
	}
	if !p.Src().IsUnspecified() || !p.Dst().IsUnspecified() {
		return 0, nil, false
	}
	rest := p.b[ipv6HdrLen:]
	if len(rest) < P2PControlHeaderLen {
		return 0, nil, false
	}
	return rest[0], rest[P2PControlHeaderLen:], true
}

// BuildP2PControl writes a control packet with the given event and
// payload into dst and returns its length.
func BuildP2PControl(dst []byte, event uint8, payload []byte) (int, error) {
	n := ipv6HdrLen + P2PControlHeaderLen + len(payload)
	if n > 0xffff+ipv6HdrLen {
		return 0, ErrTotalLength
	}
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	binary.BigEndian.PutUint32(dst[0:], 6<<28)
	binary.BigEndian.PutUint16(dst[4:], uint16(n-ipv6HdrLen))
	dst[6] = P2PControlProto
	dst[7] = 0
	u := netip.IPv6Unspecified().As16()
	copy(dst[8:24], u[:])
	copy(dst[24:40], u[:])
	clear(dst[ipv6HdrLen : ipv6HdrLen+P2PControlHeaderLen])
	dst[ipv6HdrLen] = event
	copy(dst[ipv6HdrLen+P2PControlHeaderLen:n], payload)
	return n, nil
}
