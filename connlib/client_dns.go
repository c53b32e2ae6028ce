package connlib

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"

	mdns "github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/ippacket"
)

// clientDNS answers the DNS queries applications send to the sentinel
// addresses (reference §1.4 "Client DNS"): A/AAAA for resource names
// locally with proxy IPs, other types for resource names through the
// tunnel to the resource's gateway (port 53535), everything else to the
// upstream resolver behind the sentinel over a real socket. UDP queries are
// handled here; TCP queries to the sentinels are served by clientDNSTCP.
//
// Owned by the event loop, except the upstream reader goroutines, which
// only hand replies to results.
type clientDNS struct {
	s       *clientState
	pending *dns.Pending[clientDNSOrigin]
	results chan clientUpstreamReply

	ctx    context.Context
	cancel context.CancelFunc
	conn   *net.UDPConn // towards upstream resolvers; rebound on reset
	wg     sync.WaitGroup
	out    []byte
	siteID uint16 // source port of queries forwarded to gateways
}

// clientDNSOrigin is where a forwarded query's reply goes.
type clientDNSOrigin struct {
	app      netip.AddrPort // the application's address and port
	sentinel netip.AddrPort // the sentinel it asked (source of our reply)
	gateway  string         // gateway id for site queries
	tcp      chan []byte    // set for TCP queries: the reply goes there
}

type clientUpstreamReply struct {
	from netip.AddrPort
	data []byte
	// For TCP exchanges the reply is complete (or failed) and goes
	// straight to origin.
	tcp    bool
	origin clientDNSOrigin
	query  []byte
	err    error
}

// clientDNSSitePort is the source port of queries the client forwards to a
// gateway's DNS server through the tunnel.
const clientDNSSitePort = 53535

func newClientDNS(s *clientState) *clientDNS {
	d := &clientDNS{
		s:       s,
		pending: dns.NewPending[clientDNSOrigin](dns.PendingConfig{Clock: s.c.clock}),
		results: make(chan clientUpstreamReply, 64),
		out:     make([]byte, 65535),
		siteID:  clientDNSSitePort,
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d
}

func (d *clientDNS) close() {
	d.cancel()
	if d.conn != nil {
		d.conn.Close()
	}
	d.wg.Wait()
}

// reset rebinds the upstream socket (reference §2.7) and fails what was in
// flight.
func (d *clientDNS) reset() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	d.pending.CancelIf(func(clientDNSOrigin) bool { return true })
}

// socket returns the upstream UDP socket, opening it on first use.
func (d *clientDNS) socket() (*net.UDPConn, error) {
	if d.conn != nil {
		return d.conn, nil
	}
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, err
	}
	d.conn = conn
	d.wg.Add(1)
	go d.readUpstream(conn)
	return conn, nil
}

func (d *clientDNS) readUpstream(conn *net.UDPConn) {
	defer d.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r := clientUpstreamReply{from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), data: append([]byte(nil), buf[:n]...)}
		select {
		case d.results <- r:
		case <-d.ctx.Done():
			return
		}
	}
}

// onPacket handles a packet to a sentinel (from the Tun) or a reply from a
// gateway's DNS server (from the tunnel).
func (d *clientDNS) onPacket(pkt []byte) {
	p, err := ippacket.Parse(pkt)
	if err != nil || p.Protocol() != ippacket.ProtoUDP || p.IsFragment() {
		if err == nil && p.Protocol() == ippacket.ProtoTCP {
			d.s.dnsTCP.input(pkt)
		}
		return
	}
	payload := p.Payload()[8:]
	if p.SrcPort() == dns.GatewayDNSPort && !dns.IsSentinel(p.Dst()) {
		d.onReply(payload, netip.AddrPortFrom(p.Src(), p.SrcPort()))
		return
	}
	if p.DstPort() != dns.DNSPort {
		return
	}
	origin := clientDNSOrigin{app: netip.AddrPortFrom(p.Src(), p.SrcPort()), sentinel: netip.AddrPortFrom(p.Dst(), p.DstPort())}
	d.query(dns.TransportUDP, payload, origin)
}

// query decides and acts on one query. For TCP origins msg is framed.
func (d *clientDNS) query(t dns.Transport, msg []byte, origin clientDNSOrigin) {
	s := d.s
	res, err := s.c.resolver.HandleQuery(t, msg, d.out)
	if err != nil {
		s.log.Debug("dropping DNS query", zap.Error(err))
		return
	}
	switch res.Action {
	case dns.ActionRespond:
		s.pollAssignments() // routes and allowed IPs before the app sees the IPs
		d.reply(origin, clientUnframe(t, res.Response))
	case dns.ActionForwardUpstream:
		d.forwardUpstream(res.Query, origin)
	case dns.ActionForwardSite:
		d.forwardSite(res.Query, res.ResourceID, origin)
	}
}

func clientUnframe(t dns.Transport, b []byte) []byte {
	if t == dns.TransportTCP && len(b) >= 2 {
		return b[2:]
	}
	return b
}

func (d *clientDNS) forwardUpstream(query []byte, origin clientDNSOrigin) {
	s := d.s
	v := s.c.view.Load()
	var up dns.Upstream
	ok := false
	if v.sentinels != nil {
		up, ok = v.sentinels.Upstream(origin.sentinel.Addr())
	}
	if !ok || !up.Do53.IsValid() {
		// No Do53 resolver behind this sentinel (none configured, or DoH,
		// which gozone does not speak yet).
		d.servfail(query, origin)
		return
	}
	q := append([]byte(nil), query...)
	if origin.tcp != nil {
		d.wg.Add(1)
		go d.exchangeTCP(q, up.Do53, origin)
		return
	}
	conn, err := d.socket()
	if err != nil {
		s.log.Warn("opening the DNS upstream socket", zap.Error(err))
		d.servfail(query, origin)
		return
	}
	if err := d.pending.Track(q, up.Do53, origin); err != nil {
		d.servfail(query, origin)
		return
	}
	if _, err := conn.WriteToUDPAddrPort(q, up.Do53); err != nil {
		s.log.Debug("sending DNS query upstream", zap.Stringer("upstream", up.Do53), zap.Error(err))
	}
}

// exchangeTCP forwards a TCP query over TCP (a truncated UDP answer would
// not help a client that already chose TCP).
func (d *clientDNS) exchangeTCP(q []byte, server netip.AddrPort, origin clientDNSOrigin) {
	defer d.wg.Done()
	ctx, cancel := context.WithTimeout(d.ctx, dns.DefaultForwardTimeout)
	defer cancel()
	r := clientUpstreamReply{tcp: true, origin: origin, query: q}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", server.String())
	if err == nil {
		defer conn.Close()
		dl, _ := ctx.Deadline()
		_ = conn.SetDeadline(dl)
		mc := &mdns.Conn{Conn: conn}
		var m *mdns.Msg
		if err = mc.WriteMsg(clientMsg(q)); err == nil {
			m, err = mc.ReadMsg()
		}
		if err == nil {
			r.data, err = m.Pack()
		}
	}
	r.err = err
	select {
	case d.results <- r:
	case <-d.ctx.Done():
	}
}

func clientMsg(b []byte) *mdns.Msg {
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		return &mdns.Msg{}
	}
	return m
}

func (d *clientDNS) forwardSite(query []byte, resourceID string, origin clientDNSOrigin) {
	s := d.s
	gid, ok := s.resGateway[resourceID]
	gw := s.gateways[gid]
	if !ok || gw == nil || !gw.connected {
		// Not connected yet: ask for access and let the application retry.
		if rid, ok := clientParseID(resourceID); ok {
			s.onIntent(rid)
		}
		d.servfail(query, origin)
		return
	}
	src, dst := s.ipv4, gw.ipv4
	if !src.IsValid() || !dst.IsValid() {
		src, dst = s.ipv6, gw.ipv6
	}
	server := netip.AddrPortFrom(dst, dns.GatewayDNSPort)
	origin.gateway = gid
	q := append([]byte(nil), query...)
	if err := d.pending.Track(q, server, origin); err != nil {
		d.servfail(query, origin)
		return
	}
	pkt := clientUDPPacket(nil, netip.AddrPortFrom(src, d.siteID), server, q)
	s.c.pipe.InjectToPeer(pkt)
}

// onReply matches a reply from an upstream or gateway to its query.
func (d *clientDNS) onReply(resp []byte, from netip.AddrPort) {
	origin, err := d.pending.Match(resp, from)
	if err != nil {
		d.s.log.Debug("dropping DNS reply", zap.Stringer("from", from), zap.Error(err))
		return
	}
	d.reply(origin, resp)
}

func (d *clientDNS) onUpstreamReply(r clientUpstreamReply) {
	if !r.tcp {
		d.onReply(r.data, r.from)
		return
	}
	if r.err != nil {
		d.s.log.Debug("TCP DNS upstream failed", zap.Error(r.err))
		d.servfail(r.query, r.origin)
		return
	}
	d.reply(r.origin, r.data)
}

func (d *clientDNS) servfail(query []byte, origin clientDNSOrigin) {
	out := make([]byte, dns.MaxResponseSize)
	resp, err := dns.ErrorReply(dns.TransportUDP, query, out, mdns.RcodeServerFailure)
	if err != nil {
		return
	}
	d.reply(origin, resp)
}

// reply sends one DNS message (unframed) back to the application.
func (d *clientDNS) reply(origin clientDNSOrigin, msg []byte) {
	if origin.tcp != nil {
		select {
		case origin.tcp <- append([]byte(nil), msg...):
		default:
		}
		return
	}
	pkt := clientUDPPacket(nil, origin.sentinel, origin.app, msg)
	if pkt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(d.s.ctx, clientInjectTimeout)
	defer cancel()
	if _, err := d.s.c.pipe.InjectToTun(ctx, [][]byte{pkt}, 0); err != nil {
		d.s.log.Debug("writing DNS reply", zap.Error(err))
	}
}

func (d *clientDNS) onTick() {
	d.pending.Expire(func(origin clientDNSOrigin, servfail []byte) {
		d.reply(origin, servfail)
	})
}

// forgetGateway fails the queries in flight to gw.
func (d *clientDNS) forgetGateway(gw *clientGateway) {
	d.pending.CancelIf(func(o clientDNSOrigin) bool { return o.gateway == gw.id })
}

// clientUDPPacket appends an IPv4 or IPv6 UDP packet from src to dst
// carrying payload, with checksums. It returns nil for mixed families or
// oversized payloads.
func clientUDPPacket(dst []byte, src, to netip.AddrPort, payload []byte) []byte {
	if src.Addr().Is4() != to.Addr().Is4() {
		return nil
	}
	udpLen := 8 + len(payload)
	start := len(dst)
	if src.Addr().Is4() {
		if 20+udpLen > 65535 {
			return nil
		}
		dst = append(dst, make([]byte, 20)...)
		h := dst[start:]
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+udpLen))
		h[6] = 0x40 // don't fragment
		h[8] = 64
		h[9] = ippacket.ProtoUDP
		s4, d4 := src.Addr().As4(), to.Addr().As4()
		copy(h[12:16], s4[:])
		copy(h[16:20], d4[:])
	} else {
		if udpLen > 65535 {
			return nil
		}
		dst = append(dst, make([]byte, 40)...)
		h := dst[start:]
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(udpLen))
		h[6] = ippacket.ProtoUDP
		h[7] = 64
		s16, d16 := src.Addr().As16(), to.Addr().As16()
		copy(h[8:24], s16[:])
		copy(h[24:40], d16[:])
	}
	var u [8]byte
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], to.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	dst = append(dst, u[:]...)
	dst = append(dst, payload...)
	p, err := ippacket.Parse(dst[start:])
	if err != nil {
		return nil
	}
	p.FixChecksums()
	return dst
}
