package connlib

import (
	"context"
	"net/netip"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
)

// In-tunnel control protocol (reference §1.4 "FZ p2p control protocol").
//
// Deviation from Firezone, shared with gozone's client (sessions design
// item 3): Firezone sends control packets with source and destination "::".
// wireguard-go drops every decrypted packet whose source is not in the
// peer's allowed IPs and routes outgoing packets by destination, so such
// packets cannot cross it. gozone therefore sends them with src = the
// sender's tunnel IPv6 and dst = the receiver's tunnel IPv6 (same 8-byte
// header and JSON payload), and accepts any addresses on receipt.

// gwControlMsg is a control packet handed from the packet path to the loop.
type gwControlMsg struct {
	from netip.Addr
	pkt  []byte
}

// queueControl copies a control packet for the event loop (rare: a copy is
// fine here). A full queue drops it; senders retry.
func (g *Gateway) queueControl(from netip.Addr, pkt []byte) {
	m := gwControlMsg{from: from, pkt: append([]byte(nil), pkt...)}
	select {
	case g.ctrlCh <- m:
	default:
		g.hook.controlDropped.Add(1)
	}
}

// gwDecodeControl parses a control packet whatever its addresses.
func gwDecodeControl(pkt []byte) (p2pcontrol.Message, error) {
	if len(pkt) >= p2pcontrol.IPv6HeaderLen {
		clear(pkt[8:p2pcontrol.IPv6HeaderLen]) // to the canonical :: form
	}
	return p2pcontrol.Decode(pkt)
}

// gwAddressControl writes src and dst into a control packet built in the
// canonical :: form.
func gwAddressControl(pkt []byte, src, dst netip.Addr) {
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
}

// sendControl sends a control packet to client c through the tunnel.
func (g *Gateway) sendControl(c *gwClient, pkt []byte) bool {
	if !c.v6.IsValid() || !g.iface.IPv6.IsValid() {
		return false
	}
	gwAddressControl(pkt, g.iface.IPv6, c.v6)
	return g.pipe.InjectToPeer(pkt)
}

// sendGoodbye tells c the gateway is closing the connection.
func (g *Gateway) sendGoodbye(c *gwClient) bool {
	return g.sendControl(c, p2pcontrol.AppendGoodbye(nil))
}

func (g *Gateway) clientByAddr(a netip.Addr) *gwClient {
	for _, c := range g.clients {
		if c.v6 == a || c.v4 == a {
			return c
		}
	}
	return nil
}

func (g *Gateway) handleControl(ctx context.Context, m gwControlMsg) {
	c := g.clientByAddr(m.from)
	if c == nil {
		return
	}
	msg, err := gwDecodeControl(m.pkt)
	if err != nil {
		g.log.Debug("bad control packet", zap.String("client", c.id), zap.Error(err))
		return
	}
	switch msg.Event {
	case p2pcontrol.EventGoodbye:
		// The client closes its side; keep its authorizations (as for a
		// failed connection) and drop the connection.
		g.log.Info("client said goodbye", zap.String("client", c.id))
		c.connected = false
		_ = g.node.RemoveConnection(c.id)
	case p2pcontrol.EventAssignedIPs:
		g.assignedIPs(ctx, c, msg.AssignedIPs)
	}
}

// sendDomainStatus answers assigned_ips.
func (g *Gateway) sendDomainStatus(c *gwClient, resource, domain string, active bool) {
	st := p2pcontrol.StatusInactive
	if active {
		st = p2pcontrol.StatusActive
	}
	pkt, err := p2pcontrol.AppendDomainStatus(nil, p2pcontrol.DomainStatus{Resource: resource, Domain: domain, Status: st})
	if err != nil {
		g.log.Debug("domain_status", zap.Error(err))
		return
	}
	g.sendControl(c, pkt)
}
