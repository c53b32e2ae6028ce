// Package p2pcontrol encodes and decodes Firezone's in-tunnel peer-to-peer
// control protocol (reference §1.4 "FZ p2p control protocol"): small
// event messages between a client and a gateway that travel inside the
// WireGuard tunnel like any IP packet.
//
// A control packet is an IPv6 packet with source and destination "::"
// (an address no real packet can be sent to, which is what makes control
// packets unambiguous), next header 0xFF (reserved, never real traffic),
// hop limit 0, and no ports. Its payload is an 8-byte header whose first byte
// is the event type (the other seven are zero), followed by the event's JSON.
// The protocol is event based and unreliable; senders retry (see Retrier)
// and every event is idempotent.
//
// Events: 0 assigned_ips (client → gateway), 1 domain_status (gateway →
// client), 2 goodbye (either way, on close: the receiver drops the
// connection). Unknown event types must be ignored by the receiver.
package p2pcontrol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EventType is the first byte of the control header.
type EventType uint8

const (
	EventAssignedIPs  EventType = 0
	EventDomainStatus EventType = 1
	EventGoodbye      EventType = 2
)

func (e EventType) String() string {
	switch e {
	case EventAssignedIPs:
		return "assigned_ips"
	case EventDomainStatus:
		return "domain_status"
	case EventGoodbye:
		return "goodbye"
	}
	return fmt.Sprintf("event(%d)", uint8(e))
}

const (
	// IPProtocol is the IPv6 next-header value of control packets.
	IPProtocol = 0xff
	// IPv6HeaderLen is the fixed IPv6 header size.
	IPv6HeaderLen = 40
	// HeaderLen is the control header after the IPv6 header.
	HeaderLen = 8
	// MaxPacketSize is the largest control packet: the tunnel MTU.
	MaxPacketSize = 1280
	// MaxPayloadSize is the largest JSON payload that fits.
	MaxPayloadSize = MaxPacketSize - IPv6HeaderLen - HeaderLen
)

// Errors.
var (
	// ErrNotControl: the packet is not a control packet (route it normally).
	ErrNotControl = errors.New("p2pcontrol: not a control packet")
	// ErrMalformed: a control packet whose framing or payload is broken.
	ErrMalformed = errors.New("p2pcontrol: malformed control packet")
	// ErrTooLarge: the message does not fit MaxPacketSize.
	ErrTooLarge = errors.New("p2pcontrol: message exceeds the tunnel MTU")
	// ErrWrongEvent: a typed decoder got another event type.
	ErrWrongEvent = errors.New("p2pcontrol: unexpected event type")
)

// IsControlPacket reports, cheaply and without allocating, whether pkt is a
// control packet: IPv6, next header 0xFF, source and destination "::". Call
// it on every packet that comes out of the tunnel before routing it.
func IsControlPacket(pkt []byte) bool {
	if len(pkt) < IPv6HeaderLen || pkt[0]>>4 != 6 || pkt[6] != IPProtocol {
		return false
	}
	for _, b := range pkt[8:IPv6HeaderLen] {
		if b != 0 {
			return false
		}
	}
	return true
}

// Parse checks a control packet's framing and returns its event type and
// JSON payload (a sub-slice of pkt, possibly empty). Unknown event types are
// returned, not rejected. Bytes after the IPv6 payload length are ignored.
func Parse(pkt []byte) (EventType, []byte, error) {
	if !IsControlPacket(pkt) {
		return 0, nil, ErrNotControl
	}
	plen := int(binary.BigEndian.Uint16(pkt[4:]))
	if plen < HeaderLen || IPv6HeaderLen+plen > len(pkt) {
		return 0, nil, fmt.Errorf("%w: payload length %d, packet %d bytes", ErrMalformed, plen, len(pkt))
	}
	payload := pkt[IPv6HeaderLen : IPv6HeaderLen+plen]
	return EventType(payload[0]), payload[HeaderLen:], nil
}

// AppendPacket appends a control packet carrying event ev and payload to dst.
func AppendPacket(dst []byte, ev EventType, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayloadSize {
		return dst, fmt.Errorf("%w: %d byte payload", ErrTooLarge, len(payload))
	}
	plen := HeaderLen + len(payload)
	var hdr [IPv6HeaderLen + HeaderLen]byte
	hdr[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(hdr[4:], uint16(plen))
	hdr[6] = IPProtocol
	hdr[7] = 0 // hop limit
	// bytes 8..40: source and destination "::"; control header: event, 7 zero bytes
	hdr[IPv6HeaderLen] = byte(ev)
	dst = append(dst, hdr[:]...)
	return append(dst, payload...), nil
}

// AppendGoodbye appends a goodbye packet (no payload).
func AppendGoodbye(dst []byte) []byte {
	out, _ := AppendPacket(dst, EventGoodbye, nil) // cannot fail: empty payload
	return out
}
