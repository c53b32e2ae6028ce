package connlib

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/tun"
)

// gwFakeResolver answers web.svc.test with one IPv4 address and no AAAA.
type gwFakeResolver struct{}

func (gwFakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	if host == "web.svc.test" && network == "ip4" {
		return []netip.Addr{netip.MustParseAddr("172.20.5.5")}, nil
	}
	return nil, &netErr{}
}

type netErr struct{}

func (*netErr) Error() string { return "no such host" }

// recvControl waits for a control packet of event ev on the client's Tun.
func recvControl(t *testing.T, dev *tun.MemTun, ev p2pcontrol.EventType) p2pcontrol.Message {
	t.Helper()
	var msg p2pcontrol.Message
	_, ok := recvPkt(dev, gwWait, func(p ippacket.Packet) bool {
		if !gwIsControl(p) {
			return false
		}
		m, err := gwDecodeControl(append([]byte(nil), p.Bytes()...))
		if err != nil || m.Event != ev {
			return false
		}
		msg = m
		return true
	})
	if !ok {
		t.Fatalf("no %v control packet", ev)
	}
	return msg
}

// TestGatewaySessionDNSResource: assigned_ips → domain_status Active, the
// proxy-IP ↔ real-IP NAT both ways, an IPv6 proxy IP without AAAA gets ICMP
// unreachable; then the portal goes away and the tunnel keeps forwarding.
func TestGatewaySessionDNSResource(t *testing.T) {
	f := gwSetup(t, "0s", gwFakeResolver{})
	cl := f.cl
	me4, me6 := cl.Init.Interface.IPv4.Addr, cl.Init.Interface.IPv6.Addr
	ac := cl.authorize("svc", gwProxyV4, gwProxyV6)

	proxies := []netip.Addr{
		netip.MustParseAddr("100.96.0.1"), netip.MustParseAddr("100.96.0.2"), netip.MustParseAddr("100.96.0.3"), netip.MustParseAddr("100.96.0.4"),
		netip.MustParseAddr("fd00:2021:1111:8000::1"), netip.MustParseAddr("fd00:2021:1111:8000::2"), netip.MustParseAddr("fd00:2021:1111:8000::3"), netip.MustParseAddr("fd00:2021:1111:8000::4"),
	}
	// A domain outside the resource is refused.
	bad, err := p2pcontrol.AppendAssignedIPs(nil, p2pcontrol.AssignedIPs{Resource: cl.resourceID("svc"), Domain: "evil.example.com", ProxyIPs: proxies})
	if err != nil {
		t.Fatal(err)
	}
	gwAddressControl(bad, me6, ac.GatewayIPv6.Addr)
	sendPkt(t, cl.App, bad)
	if m := recvControl(t, cl.App, p2pcontrol.EventDomainStatus); m.DomainStatus.Status != p2pcontrol.StatusInactive || m.DomainStatus.Domain != "evil.example.com" {
		t.Fatalf("domain outside the resource: %+v", m.DomainStatus)
	}

	pkt, err := p2pcontrol.AppendAssignedIPs(nil, p2pcontrol.AssignedIPs{Resource: cl.resourceID("svc"), Domain: "web.svc.test", ProxyIPs: proxies})
	if err != nil {
		t.Fatal(err)
	}
	gwAddressControl(pkt, me6, ac.GatewayIPv6.Addr)
	sendPkt(t, cl.App, pkt)
	m := recvControl(t, cl.App, p2pcontrol.EventDomainStatus)
	if m.DomainStatus.Status != p2pcontrol.StatusActive || m.DomainStatus.Domain != "web.svc.test" {
		t.Fatalf("domain_status %+v", m.DomainStatus)
	}

	real := netip.MustParseAddr("172.20.5.5")
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me4, 41000), ap(proxies[1], 80), nil))
	got, ok := recvPkt(f.res, gwWait, func(p ippacket.Packet) bool { return p.DstPort() == 80 })
	if !ok || got.Dst() != real || got.Src() != me4 {
		t.Fatalf("NATed packet ok=%v dst=%v src=%v", ok, got.Dst(), got.Src())
	}
	if !got.ChecksumsValid() {
		t.Fatal("NATed packet has bad checksums")
	}
	sendPkt(t, f.res, mkPacket(ippacket.ProtoTCP, ap(real, 80), ap(me4, 41000), []byte("ok")))
	back, ok := recvPkt(cl.App, gwWait, func(p ippacket.Packet) bool { return p.SrcPort() == 80 && p.Protocol() == ippacket.ProtoTCP })
	if !ok || back.Src() != proxies[1] || !back.ChecksumsValid() {
		t.Fatalf("reply ok=%v src=%v, want the proxy IP %v", ok, back.Src(), proxies[1])
	}
	// An ICMP error from the real address about that flow reaches the
	// client in terms of the proxy IP.
	var ebuf [ippacket.MaxICMPv4ErrorLen]byte
	n, err := ippacket.BuildUnreachable(ebuf[:], got, ippacket.HostUnreachable, real)
	if err != nil {
		t.Fatal(err)
	}
	sendPkt(t, f.res, ebuf[:n])
	icmpErr, ok := recvPkt(cl.App, gwWait, func(p ippacket.Packet) bool { return p.IsICMPError() })
	if !ok {
		t.Fatal("ICMP error about a NATed flow did not reach the client")
	}
	if q, err := icmpErr.ICMPErrorQuote(); err != nil || q.Dst() != proxies[1] || icmpErr.Src() != proxies[1] || !icmpErr.ChecksumsValid() {
		t.Fatalf("ICMP error not translated: src %v quote %v %v", icmpErr.Src(), q.Dst(), err)
	}
	if f.g.nat.numFlows() != 1 {
		t.Fatalf("NAT flows %d", f.g.nat.numFlows())
	}

	// IPv6 proxy IP, no AAAA: ICMPv6 destination unreachable (no route).
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me6, 41001), ap(proxies[5], 80), nil))
	if _, ok := recvPkt(cl.App, gwWait, func(p ippacket.Packet) bool {
		return p.IsICMP() && !p.Is4() && p.ICMPType() == 1 && p.ICMPCode() == 0
	}); !ok {
		t.Fatal("no ICMPv6 unreachable for an IPv6 proxy IP without AAAA")
	}

	// The portal goes away: established tunnels keep forwarding.
	f.p.Close()
	waitFor(t, "gateway notices the portal is gone", func() bool { return !f.g.Status().PortalJoined })
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me4, 41002), ap(proxies[2], 80), nil))
	if got, ok := recvPkt(f.res, gwWait, func(p ippacket.Packet) bool { return p.SrcPort() == 41002 }); !ok || got.Dst() != real {
		t.Fatal("forwarding stopped while the portal is unreachable")
	}
}

// TestGatewaySessionRejectAndUpdate: resource_updated changes the filter
// in place; reject_access of the last resource sends goodbye and cuts the
// client off.
func TestGatewaySessionRejectAndUpdate(t *testing.T) {
	f := gwSetup(t, "0s", nil)
	cl := f.cl
	me := cl.Init.Interface.IPv4.Addr
	cl.authorize("web", netip.MustParsePrefix("172.20.0.0/16"))
	web := netip.MustParseAddr("172.20.1.1")
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 42000), ap(web, 80), nil))
	if _, ok := recvPkt(f.res, gwWait, func(p ippacket.Packet) bool { return p.SrcPort() == 42000 }); !ok {
		t.Fatal("port 80 before the update")
	}

	// The portal moves web's TCP filter to 8080: resource_updated.
	if err := f.p.Apply(gwTestPortalConfigWith(t, "0s", "web svc", "8080")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "filter update applied", func() bool {
		return f.g.hook.ToTun(mkPacket(ippacket.ProtoTCP, ap(me, 1), ap(web, 8080), nil)) == Pass
	})
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 42001), ap(web, 80), nil))
	if _, ok := recvPkt(cl.App, gwWait, func(p ippacket.Packet) bool { return p.IsICMP() && p.ICMPType() == 3 && p.ICMPCode() == 13 }); !ok {
		t.Fatal("old port not refused after resource_updated")
	}

	// The policy goes: reject_access, the client's last resource → goodbye.
	if err := f.p.Apply(gwTestPortalConfigWith(t, "0s", "svc", "8080")); err != nil {
		t.Fatal(err)
	}
	recvControl(t, cl.App, p2pcontrol.EventGoodbye)
	waitFor(t, "client removed", func() bool { return f.g.Status().Clients == 0 })
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 42002), ap(web, 8080), nil))
	if _, ok := recvPkt(f.res, time.Second, func(p ippacket.Packet) bool { return p.SrcPort() == 42002 }); ok {
		t.Fatal("a rejected client still reaches the resource")
	}
}
