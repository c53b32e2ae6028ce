package snownet

import "encoding/binary"

// Kind is what a datagram received on the shared socket turned out to be.
type Kind uint8

const (
	// KindUnknown is anything the classifier does not recognise; such
	// datagrams are dropped and counted.
	KindUnknown Kind = iota
	// KindWireGuard is a WireGuard message (handshake initiation, response,
	// cookie reply or transport data).
	KindWireGuard
	// KindSTUN is a STUN message (ICE connectivity checks, Binding
	// responses from STUN/TURN servers).
	KindSTUN
	// KindChannelData is a TURN ChannelData frame (RFC 8656 §12.4).
	KindChannelData
)

func (k Kind) String() string {
	switch k {
	case KindWireGuard:
		return "wireguard"
	case KindSTUN:
		return "stun"
	case KindChannelData:
		return "channeldata"
	default:
		return "unknown"
	}
}

// Sizes and constants of the wire formats the classifier recognises.
const (
	// wgMinMessageSize is the smallest WireGuard message: a transport
	// header (16 bytes) plus the Poly1305 tag of an empty keepalive.
	wgMinMessageSize = 32
	// stunHeaderSize is the fixed STUN header: type, length, cookie and
	// transaction id.
	stunHeaderSize = 20
	// stunMagicCookie sits in bytes 4..8 of every RFC 5389 STUN message.
	stunMagicCookie = 0x2112A442
	// channelDataHeaderSize is the ChannelData number plus length.
	channelDataHeaderSize = 4
)

// Classify tells what p is. It never panics and never allocates.
//
// WireGuard is checked first, and by its whole 4-byte header (a type 1..4
// followed by three zero bytes) and minimum length: a STUN check alone only
// looks at the magic cookie in bytes 4..8, which in a WireGuard transport
// packet is the receiver index and may equal the cookie by chance. A STUN
// message never starts with 0x0N 0x00 0x00 0x00 (its length field follows
// the type, and a zero-length message is only 20 bytes long), so the order
// is safe.
func Classify(p []byte) Kind {
	if isWireGuard(p) {
		return KindWireGuard
	}
	if isSTUN(p) {
		return KindSTUN
	}
	if _, _, err := ParseChannelData(p); err == nil {
		return KindChannelData
	}
	return KindUnknown
}

func isWireGuard(p []byte) bool {
	if len(p) < wgMinMessageSize {
		return false
	}
	return p[0] >= 1 && p[0] <= 4 && p[1] == 0 && p[2] == 0 && p[3] == 0
}

// isSTUN checks the RFC 5389 header: the two top bits of the type are zero,
// the length is a multiple of 4 that fits in p, and the magic cookie is
// present.
func isSTUN(p []byte) bool {
	if len(p) < stunHeaderSize {
		return false
	}
	if p[0]&0xC0 != 0 {
		return false
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if n%4 != 0 || stunHeaderSize+n > len(p) {
		return false
	}
	return binary.BigEndian.Uint32(p[4:8]) == stunMagicCookie
}

// isHandshake reports whether p is a WireGuard handshake initiation (type
// 1, 148 bytes) or response (type 2, 92 bytes).
func isHandshake(p []byte) bool {
	return isWireGuard(p) && ((p[0] == 1 && len(p) == 148) || (p[0] == 2 && len(p) == 92))
}
