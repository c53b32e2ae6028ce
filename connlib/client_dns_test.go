package connlib

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/ippacket"
)

func clientTestQuery(t testing.TB, name string, qtype uint16) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x4242
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startFakeUpstream serves DNS on addr:53 (UDP and TCP): every A question
// gets 192.0.2.55.
func startFakeUpstream(t *testing.T, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, "53"))
	if err != nil {
		t.Fatalf("cannot bind a fake upstream on %s:53: %v", addr, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "53"))
	if err != nil {
		t.Fatalf("cannot bind a fake upstream on %s:53/tcp: %v", addr, err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.55")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	udp := &mdns.Server{PacketConn: pc, Handler: h}
	tcp := &mdns.Server{Listener: ln, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
}

// dnsExchange sends a query from the application to a sentinel through
// the client's Tun and returns the parsed reply.
func dnsExchange(t *testing.T, tc *testClient, sentinel netip.Addr, port uint16, q []byte) *mdns.Msg {
	t.Helper()
	src := netip.AddrPortFrom(tc.c.Status().IPv4, port)
	memSend(t, tc.app, clientUDPPacket(nil, src, netip.AddrPortFrom(sentinel, 53), q))
	p := memRecv(t, tc.app, clientWait, udpTo(src))
	if p.Src() != sentinel || p.SrcPort() != 53 {
		t.Fatalf("reply from %v:%d, want the sentinel", p.Src(), p.SrcPort())
	}
	m := new(mdns.Msg)
	if err := m.Unpack(p.Payload()[8:]); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if m.Id != 0x4242 {
		t.Fatalf("reply id %x", m.Id)
	}
	return m
}

// TestClientDNS covers DNS interception end to end in one process: local
// answers with proxy IPs for a DNS resource (A and AAAA, stable), upstream
// forwarding for other names, and then a packet to a proxy IP: access is
// requested, the client sends assigned_ips to the gateway through the
// tunnel and retries it until domain_status arrives, and only then the
// buffered packet is delivered.
func TestClientDNS(t *testing.T) {
	const upstream = "127.0.77.1"
	startFakeUpstream(t, upstream)
	p := startClientTestPortal(t, "")
	gw := startScriptedGateway(t, p)
	tc := startTestClient(t, p, ctClientToken, func(cfg *ClientConfig) {
		cfg.SystemResolvers = []netip.Addr{netip.MustParseAddr(upstream)}
	})
	tc.waitReady(t)
	st := tc.c.Status()
	if len(st.DNS) != 1 || !dns.IsSentinel(st.DNS[0]) {
		t.Fatalf("DNS servers %v", st.DNS)
	}
	sentinel := st.DNS[0]

	a := dnsExchange(t, tc, sentinel, 5353, clientTestQuery(t, "web.app.corp.", mdns.TypeA))
	if a.Rcode != mdns.RcodeSuccess || len(a.Answer) != 4 {
		t.Fatalf("A answer: %v", a)
	}
	var v4 []netip.Addr
	for _, rr := range a.Answer {
		ar, ok := rr.(*mdns.A)
		if !ok || ar.Hdr.Ttl != 1 {
			t.Fatalf("answer %v", rr)
		}
		ip, _ := netip.AddrFromSlice(ar.A.To4())
		if !dns.ProxyRangeV4.Contains(ip) {
			t.Fatalf("proxy IP %v outside the range", ip)
		}
		v4 = append(v4, ip)
	}
	aaaa := dnsExchange(t, tc, sentinel, 5354, clientTestQuery(t, "web.app.corp.", mdns.TypeAAAA))
	if len(aaaa.Answer) != 4 {
		t.Fatalf("AAAA answer: %v", aaaa)
	}
	again := dnsExchange(t, tc, sentinel, 5355, clientTestQuery(t, "WEB.app.corp.", mdns.TypeA))
	if again.Answer[0].(*mdns.A).A.String() != v4[0].String() {
		t.Fatal("proxy IPs are not stable")
	}
	up := dnsExchange(t, tc, sentinel, 5356, clientTestQuery(t, "example.org.", mdns.TypeA))
	if len(up.Answer) != 1 || up.Answer[0].(*mdns.A).A.String() != "192.0.2.55" {
		t.Fatalf("upstream answer: %v", up)
	}

	// A packet to a proxy IP.
	src := netip.AddrPortFrom(st.IPv4, 41000)
	dst := netip.AddrPortFrom(v4[1], 443)
	memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte("to-dns-resource")))
	isCtl := func(p ippacket.Packet) bool { return !p.Is4() && p.Protocol() == ippacket.P2PControlProto }
	first := memRecv(t, gw.lan, clientWait, isCtl)
	// Do not answer the first one: the client must retry.
	second := memRecv(t, gw.lan, clientWait, isCtl)
	clientSetControlAddrs(second.Bytes(), netip.IPv6Unspecified(), netip.IPv6Unspecified())
	msg, err := p2pcontrol.Decode(second.Bytes())
	if err != nil || msg.Event != p2pcontrol.EventAssignedIPs {
		t.Fatalf("control message %v %v", msg, err)
	}
	ai := msg.AssignedIPs
	if ai.Domain != "web.app.corp" || len(ai.ProxyIPs) != 8 || ai.ProxyIPs[0] != v4[0] {
		t.Fatalf("assigned_ips %+v", ai)
	}
	if first.Src() != st.IPv6 {
		t.Fatalf("control packet from %v, want the client's tunnel IPv6", first.Src())
	}
	// The buffered packet must still wait for domain_status.
	if _, ok := memTryRecv(gw.lan, 500*time.Millisecond, udpTo(dst)); ok {
		t.Fatal("packet delivered before domain_status")
	}
	reply, err := p2pcontrol.AppendDomainStatus(nil, p2pcontrol.DomainStatus{Resource: ai.Resource, Domain: ai.Domain, Status: p2pcontrol.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	clientSetControlAddrs(reply, first.Dst(), first.Src())
	memSend(t, gw.lan, reply)
	got := memRecv(t, gw.lan, clientWait, udpTo(dst))
	if string(got.Payload()[8:]) != "to-dns-resource" {
		t.Fatalf("payload %q", got.Payload()[8:])
	}
	// A name the gateway cannot resolve: domain_status Inactive, and the
	// waiting packet is answered with ICMP network unreachable.
	b := dnsExchange(t, tc, sentinel, 5357, clientTestQuery(t, "nope.app.corp.", mdns.TypeA))
	badIP, _ := netip.AddrFromSlice(b.Answer[0].(*mdns.A).A.To4())
	memSend(t, tc.app, clientUDPPacket(nil, src, netip.AddrPortFrom(badIP, 443), []byte("to-unresolvable")))
	var ctl ippacket.Packet
	for {
		ctl = memRecv(t, gw.lan, clientWait, isCtl)
		cp := append([]byte(nil), ctl.Bytes()...)
		clientSetControlAddrs(cp, netip.IPv6Unspecified(), netip.IPv6Unspecified())
		if m, err := p2pcontrol.Decode(cp); err == nil && m.AssignedIPs != nil && m.AssignedIPs.Domain == "nope.app.corp" {
			break
		}
	}
	inactive, err := p2pcontrol.AppendDomainStatus(nil, p2pcontrol.DomainStatus{Resource: ai.Resource, Domain: "nope.app.corp", Status: p2pcontrol.StatusInactive})
	if err != nil {
		t.Fatal(err)
	}
	clientSetControlAddrs(inactive, ctl.Dst(), ctl.Src())
	memSend(t, gw.lan, inactive)
	icmp := memRecv(t, tc.app, clientWait, func(p ippacket.Packet) bool { return p.IsICMPError() })
	if icmp.ICMPType() != 3 || icmp.ICMPCode() != 0 || icmp.Src() != badIP {
		t.Fatalf("ICMP type %d code %d from %v, want net unreachable from %v", icmp.ICMPType(), icmp.ICMPCode(), icmp.Src(), badIP)
	}

	// Answered: no more retries.
	time.Sleep(2500 * time.Millisecond)
	if _, ok := memTryRecv(gw.lan, 100*time.Millisecond, isCtl); ok {
		// One retry may have been in flight while the answer travelled;
		// after it nothing more may come.
		if _, ok := memTryRecv(gw.lan, 3*time.Second, isCtl); ok {
			t.Fatal("assigned_ips still retried after domain_status")
		}
	}
}

// TestClientDNSOverTCP: queries over TCP to the sentinel (the application
// side is a userspace TCP stack attached to the client's Tun) are answered
// locally for resource names and forwarded over TCP to the upstream for
// the rest.
func TestClientDNSOverTCP(t *testing.T) {
	const upstream = "127.0.77.3"
	startFakeUpstream(t, upstream)
	p := startClientTestPortal(t, "")
	tc := startTestClient(t, p, ctClientToken, func(cfg *ClientConfig) {
		cfg.SystemResolvers = []netip.Addr{netip.MustParseAddr(upstream)}
	})
	tc.waitReady(t)
	st := tc.c.Status()
	appDev, appNet, err := netstack.CreateNetTUN([]netip.Addr{st.IPv4}, nil, 1280)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); appDev.Close() }()
	go func() { // app stack → client Tun
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		for {
			n, err := appDev.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			if n == 1 && tc.app.SendReady(ctx) == nil {
				_, _ = tc.app.Send([][]byte{bufs[0][:sizes[0]]}, 0)
			}
		}
	}()
	go func() { // client Tun → app stack
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		for {
			n, err := tc.app.PollRecvMany(ctx, bufs, sizes, 0)
			if err != nil {
				return
			}
			if n == 1 {
				_, _ = appDev.Write([][]byte{bufs[0][:sizes[0]]}, 0)
			}
		}
	}()
	dctx, dcancel := context.WithTimeout(ctx, clientWait)
	defer dcancel()
	conn, err := appNet.DialContextTCPAddrPort(dctx, netip.AddrPortFrom(st.DNS[0], 53))
	if err != nil {
		t.Fatalf("TCP connect to the sentinel: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(clientWait))
	co := &mdns.Conn{Conn: conn}
	ask := func(name string, qtype uint16) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("reading the TCP reply: %v", err)
		}
		if r.Id != m.Id {
			t.Fatalf("reply id %d, want %d", r.Id, m.Id)
		}
		return r
	}
	if r := ask("web.app.corp.", mdns.TypeAAAA); len(r.Answer) != 4 {
		t.Fatalf("AAAA over TCP: %v", r)
	}
	// Two queries on one connection, the second forwarded upstream.
	if r := ask("example.org.", mdns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "192.0.2.55" {
		t.Fatalf("upstream over TCP: %v", r)
	}
}

// TestClientDNSSiteForwarding: other record types for a resource name go
// through the tunnel to the resource's gateway (port 53535): before the
// gateway is connected the application gets SERVFAIL (and access is
// requested), afterwards the gateway's answer comes back with the
// application's query id.
func TestClientDNSSiteForwarding(t *testing.T) {
	p := startClientTestPortal(t, "")
	gw := startScriptedGateway(t, p)
	tc := startTestClient(t, p, ctClientToken, func(cfg *ClientConfig) {
		cfg.SystemResolvers = []netip.Addr{netip.MustParseAddr("127.0.77.4")}
	})
	tc.waitReady(t)
	sentinel := tc.c.Status().DNS[0]
	first := dnsExchange(t, tc, sentinel, 5400, clientTestQuery(t, "web.app.corp.", mdns.TypeTXT))
	if first.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("before the connection: %v", first)
	}
	deadline := time.Now().Add(clientWait)
	for {
		gws := tc.c.Status().Gateways
		if len(gws) == 1 && gws[0].Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection to the DNS resource's gateway")
		}
		time.Sleep(20 * time.Millisecond)
	}
	gwIP := netip.Addr{}
	for ip := range tc.c.view.Load().gatewayIPs {
		if ip.Is4() {
			gwIP = ip
		}
	}
	src := netip.AddrPortFrom(tc.c.Status().IPv4, 5401)
	memSend(t, tc.app, clientUDPPacket(nil, src, netip.AddrPortFrom(sentinel, 53), clientTestQuery(t, "web.app.corp.", mdns.TypeTXT)))
	fwd := memRecv(t, gw.lan, clientWait, udpTo(netip.AddrPortFrom(gwIP, dns.GatewayDNSPort)))
	q := new(mdns.Msg)
	if err := q.Unpack(fwd.Payload()[8:]); err != nil || len(q.Question) != 1 || q.Question[0].Name != "web.app.corp." {
		t.Fatalf("forwarded query %v %v", q, err)
	}
	ans := new(mdns.Msg)
	ans.SetReply(q)
	rr, _ := mdns.NewRR(`web.app.corp. 60 IN TXT "from-the-site"`)
	ans.Answer = append(ans.Answer, rr)
	b, _ := ans.Pack()
	memSend(t, gw.lan, clientUDPPacket(nil, netip.AddrPortFrom(gwIP, dns.GatewayDNSPort), netip.AddrPortFrom(fwd.Src(), fwd.SrcPort()), b))
	reply := memRecv(t, tc.app, clientWait, udpTo(src))
	m := new(mdns.Msg)
	if err := m.Unpack(reply.Payload()[8:]); err != nil || m.Id != 0x4242 || len(m.Answer) != 1 {
		t.Fatalf("reply %v %v", m, err)
	}
	if txt, ok := m.Answer[0].(*mdns.TXT); !ok || txt.Txt[0] != "from-the-site" {
		t.Fatalf("answer %v", m.Answer[0])
	}
}
