package connlib

import (
	"net/netip"
	"sync/atomic"

	"github.com/gozone/gozone/connlib/acl"
	"github.com/gozone/gozone/connlib/ippacket"
)

// DNS proxy IP ranges (reference §1.4): destinations a client uses for DNS
// resources; the gateway NATs them to the real addresses.
var (
	gwProxyV4 = netip.MustParsePrefix("100.96.0.0/11")
	gwProxyV6 = netip.MustParsePrefix("fd00:2021:1111:8000::/107")
)

// GatewayDrops counts what the gateway's packet path refused.
type GatewayDrops struct {
	// ByVerdict counts packets from clients by acl verdict (index
	// acl.Verdict); Allow and AllowGateway are forwarded packets.
	ByVerdict [16]uint64
	// NoNAT: DNS-resource packets without a real address of their family
	// (answered with ICMP net unreachable).
	NoNAT uint64
	// Untracked: packets towards a client that belong to no tracked flow.
	Untracked uint64
	// NotClient: packets from the TUN to an address that is no client.
	NotClient uint64
	// Malformed: packets that did not parse (either direction).
	Malformed uint64
	// Control: in-tunnel control packets received; ControlDropped: those
	// the session could not take (queue full).
	Control, ControlDropped uint64
	// ICMPSent: ICMP errors sent back to clients.
	ICMPSent uint64
}

// gatewayHook is the gateway's PacketHook: ToTun sees packets clients sent
// (decrypted; WireGuard has already checked their source against the
// client's allowed IPs), FromTun sees packets from resources towards
// clients.
//
// It reads immutable snapshots through atomic pointers, never takes the
// session's lock and does not allocate (except when a DNS-resource flow is
// seen for the first time, which inserts into the NAT table).
type gatewayHook struct {
	g       *Gateway
	clients atomic.Pointer[map[netip.Addr]*acl.Client]
	gwAddrs atomic.Pointer[[2]netip.Addr]

	verdicts                [16]atomic.Uint64
	noNAT, untracked, notCl atomic.Uint64
	malformed               atomic.Uint64
	control, controlDropped atomic.Uint64
	icmpSent                atomic.Uint64
}

var _ PacketHook = (*gatewayHook)(nil)

func newGatewayHook(g *Gateway) *gatewayHook {
	h := &gatewayHook{g: g}
	m := map[netip.Addr]*acl.Client{}
	h.clients.Store(&m)
	h.gwAddrs.Store(&[2]netip.Addr{})
	return h
}

func (h *gatewayHook) setClients(m map[netip.Addr]*acl.Client) { h.clients.Store(&m) }

func (h *gatewayHook) setGatewayAddrs(v4, v6 netip.Addr) { h.gwAddrs.Store(&[2]netip.Addr{v4, v6}) }

func (h *gatewayHook) drops() GatewayDrops {
	var d GatewayDrops
	for i := range h.verdicts {
		d.ByVerdict[i] = h.verdicts[i].Load()
	}
	d.NoNAT, d.Untracked, d.NotClient = h.noNAT.Load(), h.untracked.Load(), h.notCl.Load()
	d.Malformed = h.malformed.Load()
	d.Control, d.ControlDropped = h.control.Load(), h.controlDropped.Load()
	d.ICMPSent = h.icmpSent.Load()
	return d
}

// gwIsControl reports whether p is an in-tunnel control packet. gozone
// sends them with real tunnel addresses (wireguard-go drops src=:: and
// cannot route dst=::, see sessions design item 3), so any IPv6 packet with
// next header 0xFF counts, whatever its addresses.
func gwIsControl(p ippacket.Packet) bool {
	return !p.Is4() && p.Protocol() == ippacket.P2PControlProto
}

// ToTun filters a packet from a client (reference §1.4 translate_outbound).
func (h *gatewayHook) ToTun(pkt []byte) Verdict {
	p, err := ippacket.Parse(pkt)
	if err != nil {
		h.malformed.Add(1)
		return Drop
	}
	if gwIsControl(p) {
		h.control.Add(1)
		h.g.queueControl(p.Src(), pkt)
		return Drop
	}
	c := (*h.clients.Load())[p.Src()]
	if c == nil {
		h.verdicts[acl.DropUnknownClient].Add(1)
		return Drop
	}
	now := h.g.clock.Now()
	v := c.Check(p, now)
	h.verdicts[v&15].Add(1)
	switch v {
	case acl.Allow:
		if gwIsProxyIP(p.Dst()) {
			if !h.g.nat.translateOut(p, now) {
				h.noNAT.Add(1)
				h.sendICMP(p, ippacket.NetUnreachable)
				return Drop
			}
		}
		h.g.tracker.Track(p, now)
		return Pass
	case acl.AllowGateway:
		h.g.tracker.Track(p, now)
		return Pass
	}
	if kind, ok := v.ICMP(); ok {
		h.sendICMP(p, kind)
	}
	return Drop
}

// FromTun lets a packet from a resource (or the gateway itself) through to
// a client only when it belongs to a flow the client opened.
func (h *gatewayHook) FromTun(pkt []byte) Verdict {
	p, err := ippacket.Parse(pkt)
	if err != nil {
		h.malformed.Add(1)
		return Drop
	}
	if (*h.clients.Load())[p.Dst()] == nil {
		h.notCl.Add(1)
		return Drop
	}
	now := h.g.clock.Now()
	if !h.g.tracker.AllowReply(p, now) {
		h.untracked.Add(1)
		return Drop
	}
	if p.IsICMPError() {
		h.g.nat.translateInICMPError(p)
	} else {
		h.g.nat.translateIn(p, now)
	}
	return Pass
}

// sendICMP answers p with an ICMP error through the tunnel. The buffer is
// on the stack: InjectToPeer copies it.
func (h *gatewayHook) sendICMP(p ippacket.Packet, kind ippacket.Unreachable) {
	var buf [ippacket.MaxICMPv6ErrorLen]byte
	n, err := ippacket.BuildUnreachable(buf[:], p, kind, netip.Addr{})
	if err != nil {
		return
	}
	if h.g.pipe.InjectToPeer(buf[:n]) {
		h.icmpSent.Add(1)
	}
}

func gwIsProxyIP(a netip.Addr) bool {
	if a.Is4() {
		return gwProxyV4.Contains(a)
	}
	return gwProxyV6.Contains(a)
}
