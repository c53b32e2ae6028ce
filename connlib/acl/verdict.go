package acl

import "github.com/gozone/gozone/connlib/ippacket"

// Verdict is the outcome of an access check: Allow, AllowGateway, or one
// of the Drop reasons.
type Verdict uint8

const (
	// Allow: forward the packet to the resource.
	Allow Verdict = iota
	// AllowGateway: the packet is addressed to the gateway's own tunnel
	// address (its DNS server on port 53535); deliver it locally.
	AllowGateway
	// DropMalformed: the packet could not be parsed.
	DropMalformed
	// DropUnknownClient: no such client (or it was removed).
	DropUnknownClient
	// DropSpoofedSource: the source is not the client's tunnel address.
	DropSpoofedSource
	// DropPeerDestination: the destination is another device's tunnel
	// address.
	DropPeerDestination
	// DropNoResource: no resource the client is authorized for contains
	// the destination.
	DropNoResource
	// DropFiltered: a resource contains the destination but none of the
	// covering resources' filters permit the protocol/port.
	DropFiltered
	// DropExpired: the only covering authorizations have expired.
	DropExpired
	// DropForbiddenDestination: only the internet resource could carry
	// the packet and its destination is one the internet resource must
	// not reach (private, loopback, link-local, CGNAT, multicast, ...).
	DropForbiddenDestination
	numVerdicts
)

var verdictNames = [numVerdicts]string{
	"allow", "allow-gateway", "malformed", "unknown-client", "spoofed-source",
	"peer-destination", "no-resource", "filtered", "expired", "forbidden-destination",
}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "invalid"
}

// Allowed reports whether the packet may pass.
func (v Verdict) Allowed() bool { return v == Allow || v == AllowGateway }

// ICMP says which ICMP error, if any, the gateway should answer a dropped
// packet with (reference §1.4: ICMP prohibited, or net-unreachable for
// internet-resource rejects). Packets from an unknown client or with a
// spoofed source get no answer: the source address cannot be trusted.
func (v Verdict) ICMP() (kind ippacket.Unreachable, send bool) {
	switch v {
	case DropForbiddenDestination:
		return ippacket.NetUnreachable, true
	case DropPeerDestination, DropNoResource, DropFiltered, DropExpired:
		return ippacket.Prohibited, true
	}
	return 0, false
}
