package netstack

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ICMP echo through a userspace gateway. gVisor in promiscuous mode would
// answer every echo request itself, claiming any address is up; instead
// Send hands echo requests for other addresses to the forwarder, which
// pings the destination from the host and, if it answers, writes the echo
// reply the destination would have sent.
//
// Without root, pinging needs the kernel's unprivileged ICMP sockets
// (sysctl net.ipv4.ping_group_range must include the process's group);
// with CAP_NET_RAW a raw socket is used instead. With neither, echo
// requests are dropped and counted (EchoDropped) and a warning is logged
// once: the client sees a timeout, never a false reply.

const (
	icmp4Proto = 1
	icmp6Proto = 58
)

// intercept reports whether pkt is an ICMP echo request the forwarder
// takes (it then owns a copy). It does not allocate for other packets.
func (f *forwarder) intercept(pkt []byte) bool {
	var dst netip.Addr
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < header.IPv4MinimumSize || len(pkt) < ihl+8 || pkt[9] != icmp4Proto || pkt[ihl] != 8 ||
			binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 { // fragments: leave to the stack
			return false
		}
		dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	case 6:
		if len(pkt) < header.IPv6MinimumSize+8 || pkt[6] != icmp6Proto || pkt[40] != 128 {
			return false
		}
		dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		if dst.IsMulticast() || dst.IsLinkLocalUnicast() {
			return false
		}
	default:
		return false
	}
	if f.dev.isLocal(dst) {
		return false // the gateway's own address: the stack answers
	}
	if badDestination(dst) {
		f.badDest.Add(1)
		return true // dropped: the stack must not answer for it either
	}
	select {
	case f.echoSem <- struct{}{}:
	default:
		f.echoDropped.Add(1)
		return true
	}
	if !f.start(nil) {
		<-f.echoSem
		return true
	}
	cp := append([]byte(nil), pkt...)
	go func() {
		defer f.done(nil)
		defer func() { <-f.echoSem }()
		if !f.echo(cp) {
			f.echoDropped.Add(1)
		}
	}()
	return true
}

// echo pings the (redirected) destination of the echo request pkt and
// queues the reply for the client.
func (f *forwarder) echo(pkt []byte) bool {
	var src, dst netip.Addr
	var msg []byte
	v6 := pkt[0]>>4 == 6
	if v6 {
		src, dst = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
		plen := int(binary.BigEndian.Uint16(pkt[4:6]))
		if plen < 8 || header.IPv6MinimumSize+plen > len(pkt) {
			return false
		}
		msg = pkt[header.IPv6MinimumSize : header.IPv6MinimumSize+plen]
	} else {
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if total < ihl+8 || total > len(pkt) {
			return false
		}
		src, dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
		msg = pkt[ihl:total]
	}
	id, seq := binary.BigEndian.Uint16(msg[4:6]), binary.BigEndian.Uint16(msg[6:8])
	data := msg[8:]
	target := f.cfg.Redirect(dst)
	if !target.IsValid() || target.Is4() != dst.Is4() {
		return false
	}
	if !f.ping(target, id, seq, data) {
		return false
	}
	// Count before handing the reply over: a caller that saw the reply
	// must also see the counter (TestUserspacePing failed once in CI on
	// the old order).
	f.echoReplies.Add(1)
	f.dev.writeOutbound(buildEchoReply(dst, src, id, seq, data))
	return true
}

// ping sends one echo request to target from the host and waits for the
// matching reply.
func (f *forwarder) ping(target netip.Addr, id, seq uint16, data []byte) bool {
	c, dgram := f.listenICMP(target.Is6())
	if c == nil {
		return false
	}
	if !f.track(c) {
		c.Close()
		return false
	}
	defer f.untrack(c)
	defer c.Close()
	var typ, replyTyp icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := icmp4Proto
	if target.Is6() {
		typ, replyTyp, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, icmp6Proto
	}
	req, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(id), Seq: int(seq), Data: data}}).Marshal(nil)
	if err != nil {
		return false
	}
	var to net.Addr = &net.IPAddr{IP: target.AsSlice()}
	if dgram {
		to = &net.UDPAddr{IP: target.AsSlice()}
	}
	if _, err := c.WriteTo(req, to); err != nil {
		f.log.Debug("forward echo: send failed", zap.Stringer("dst", target), zap.Error(err))
		return false
	}
	f.echoSent.Add(1)
	_ = c.SetReadDeadline(time.Now().Add(f.cfg.EchoTimeout))
	buf := make([]byte, 65535)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if a := peerAddr(peer); a != target {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyTyp {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		// A ping socket's kernel picks the identifier; a raw socket sees
		// every reply on the host, so it must match ours.
		if !ok || e.Seq != int(seq) || (!dgram && e.ID != int(id)) || !bytes.Equal(e.Data, data) {
			continue
		}
		return true
	}
}

// listenICMP opens an unprivileged ping socket, else a raw one; nil when
// neither is allowed (warned once).
func (f *forwarder) listenICMP(v6 bool) (c *icmp.PacketConn, dgram bool) {
	dgNet, rawNet, any := "udp4", "ip4:icmp", "0.0.0.0"
	if v6 {
		dgNet, rawNet, any = "udp6", "ip6:ipv6-icmp", "::"
	}
	c, err := icmp.ListenPacket(dgNet, any)
	if err == nil {
		return c, true
	}
	c, err2 := icmp.ListenPacket(rawNet, any)
	if err2 == nil {
		return c, false
	}
	if !f.echoWarned.Swap(true) {
		f.log.Warn("ICMP echo through the userspace gateway needs unprivileged ping sockets "+
			"(sysctl net.ipv4.ping_group_range) or CAP_NET_RAW; dropping echo requests",
			zap.NamedError("ping_socket", err), zap.NamedError("raw_socket", err2))
	}
	return nil, false
}

func peerAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// buildEchoReply makes the IP packet src → dst carrying an echo reply.
func buildEchoReply(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	if src.Is4() {
		pkt := make([]byte, header.IPv4MinimumSize+8+len(data))
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(pkt)), TTL: 64, Protocol: icmp4Proto,
			SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		m := pkt[header.IPv4MinimumSize:]
		m[0] = 0 // echo reply
		binary.BigEndian.PutUint16(m[4:6], id)
		binary.BigEndian.PutUint16(m[6:8], seq)
		copy(m[8:], data)
		binary.BigEndian.PutUint16(m[2:4], ^checksum.Checksum(m, 0))
		return pkt
	}
	pkt := make([]byte, header.IPv6MinimumSize+8+len(data))
	s, d := tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(dst.As16())
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength: uint16(8 + len(data)), TransportProtocol: icmp6Proto, HopLimit: 64,
		SrcAddr: s, DstAddr: d,
	})
	m := pkt[header.IPv6MinimumSize:]
	m[0] = 129 // echo reply
	binary.BigEndian.PutUint16(m[4:6], id)
	binary.BigEndian.PutUint16(m[6:8], seq)
	copy(m[8:], data)
	sum := header.PseudoHeaderChecksum(icmp6Proto, s, d, uint16(len(m)))
	binary.BigEndian.PutUint16(m[2:4], ^checksum.Checksum(m, sum))
	return pkt
}

// writeOutbound queues pkt for PollRecvMany as if the stack had sent it.
func (d *Device) writeOutbound(pkt []byte) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.isClosed.Load() {
		return
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	var l stack.PacketBufferList
	l.PushBack(pb)
	_, _ = d.ep.WritePackets(l)
	pb.DecRef()
}
