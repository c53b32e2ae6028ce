package connlib

import (
	"net/netip"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/routing"
)

// clientHook is the client's PacketHook: it routes packets leaving the Tun
// to resources (passing those whose gateway is connected, buffering the
// others and asking for authorization), intercepts DNS queries to the
// sentinels, and takes in-tunnel control messages and forwarded DNS replies
// out of the decrypted stream.
//
// It reads only the atomic clientView, the lock-free routing table and the
// resolver (one short mutex, proxy IPs only); the steady-state path of a
// connected resource neither locks the session nor allocates.
type clientHook Client

var _ PacketHook = (*clientHook)(nil)

// FromTun decides for one packet read from the Tun.
func (h *clientHook) FromTun(pkt []byte) Verdict {
	c := (*Client)(h)
	p, err := ippacket.Parse(pkt)
	if err != nil {
		return Drop
	}
	dst := p.Dst()
	if dst.IsMulticast() {
		return Drop
	}
	v := c.view.Load()
	// Only the tunnel's own addresses may send into the tunnel (as in
	// Firezone): anything else is a routing mistake or spoofing.
	if src := p.Src(); src != v.ipv4 && src != v.ipv6 {
		return Drop
	}
	if dns.IsSentinel(dst) {
		c.toEventLoop(c.dnsIn, pkt)
		return Drop
	}
	if routing.IsProxyAddr(dst) {
		t, ok := c.resolver.LookupProxyIP(dst)
		if !ok {
			return Drop // never handed out, or its resource is gone
		}
		rid, ok := clientParseID(t.ResourceID)
		if !ok {
			return Drop
		}
		target := clientTarget{rid: rid, name: t.Name}
		if v.ready[rid] && v.active[target] {
			return Pass
		}
		return c.hold(target, pkt)
	}
	rid, kind := c.table.LookupKind(dst)
	switch kind {
	case routing.KindCIDR, routing.KindInternet:
		if v.ready[rid] {
			return Pass
		}
		return c.hold(clientTarget{rid: rid}, pkt)
	}
	if v.gatewayIPs[dst] {
		return Pass // to a gateway's own tunnel address (its DNS server)
	}
	return Drop
}

// hold buffers pkt for target and wakes the event loop when an
// authorization request is due.
func (c *Client) hold(t clientTarget, pkt []byte) Verdict {
	if c.pending.Add(t, pkt) {
		select {
		case c.intents <- t.rid:
		default: // the loop is busy; the next packet after the throttle retries
		}
	}
	return Drop
}

// toEventLoop copies pkt for the event loop; a full channel drops it.
func (c *Client) toEventLoop(ch chan *clientPacket, pkt []byte) {
	cp := c.getPacket(pkt)
	select {
	case ch <- cp:
	default:
		c.putPacket(cp)
	}
}

// ToTun decides for one decrypted packet.
func (h *clientHook) ToTun(pkt []byte) Verdict {
	c := (*Client)(h)
	if clientIsControl(pkt) {
		c.toEventLoop(c.ctrlIn, pkt)
		return Drop
	}
	p, err := ippacket.Parse(pkt)
	if err != nil {
		return Drop
	}
	if p.Protocol() == ippacket.ProtoUDP && p.SrcPort() == dns.GatewayDNSPort {
		if v := c.view.Load(); v.gatewayIPs[p.Src()] {
			c.toEventLoop(c.dnsIn, pkt)
			return Drop
		}
	}
	return Pass
}

// clientIsControl recognises an in-tunnel control packet: IPv6 with next
// header 0xFF and room for the control header. gozone sends them with the
// peers' tunnel addresses instead of Firezone's "::" because wireguard-go
// filters decrypted packets by source address and routes by destination
// (see sessions design, item 3); any addresses are accepted.
func clientIsControl(pkt []byte) bool {
	return len(pkt) >= 48 && pkt[0]>>4 == 6 && pkt[6] == ippacket.P2PControlProto
}

// clientSetControlAddrs rewrites the addresses of a control packet built with
// "::" (p2pcontrol) to src and dst.
func clientSetControlAddrs(pkt []byte, src, dst netip.Addr) {
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
}

// clientParseID turns a portal id (a UUID) into a routing.ResourceID
// without allocating. Ids that are not UUIDs are hashed (FNV-1a into 16
// bytes) so that any id the portal sends is usable.
func clientParseID(s string) (routing.ResourceID, bool) {
	var id routing.ResourceID
	if len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' {
		j := 0
		ok := true
		for i := 0; i < 36 && ok; {
			if s[i] == '-' {
				i++
				continue
			}
			hi, ok1 := clientFromHex(s[i])
			lo, ok2 := clientFromHex(s[i+1])
			ok = ok1 && ok2
			id[j] = hi<<4 | lo
			j++
			i += 2
		}
		if ok && j == 16 {
			return id, true
		}
	}
	if s == "" {
		return id, false
	}
	h1, h2 := uint64(14695981039346656037), uint64(1099511628211)
	for i := 0; i < len(s); i++ {
		h1 ^= uint64(s[i])
		h1 *= 1099511628211
		h2 ^= uint64(s[i])
		h2 *= 14695981039346656037 | 1
	}
	for i := 0; i < 8; i++ {
		id[i] = byte(h1 >> (8 * i))
		id[8+i] = byte(h2 >> (8 * i))
	}
	return id, true
}

func clientFromHex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
