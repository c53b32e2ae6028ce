package connlib

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	devportal "github.com/gozone/gozone/examples/portal"
	"github.com/gozone/gozone/tun"
)

// sessionFakeResolver answers the gateway's lookups for *.app.corp.
type sessionFakeResolver struct{}

func (sessionFakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	if !strings.HasSuffix(strings.TrimSuffix(host, "."), ".app.corp") {
		return nil, &mdnsNotFound{host}
	}
	if network == "ip6" {
		return []netip.Addr{netip.MustParseAddr("fd99::200")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("10.99.0.200")}, nil
}

type mdnsNotFound struct{ host string }

func (e *mdnsNotFound) Error() string { return "no such host " + e.host }

// startSessionGateway runs the real gateway session on an in-memory Tun;
// the returned end is its resource network.
func startSessionGateway(t *testing.T, p *devportal.Portal) (*Gateway, *tun.MemTun) {
	t.Helper()
	lan, dev := tun.NewMemPair(tun.MemConfig{Name: "gwsess"})
	g, err := NewGateway(GatewayConfig{
		Tun: dev, APIURL: p.URL(), Token: ctGatewayToken, FirezoneID: "gw-real", Name: "gw-real",
		Logger: clientTestLogger(t, "gateway"), Snownet: GatewaySnownet{HostIP: netip.MustParseAddr("127.0.0.1")},
		Resolver: sessionFakeResolver{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(clientWait):
			t.Errorf("gateway did not stop")
		}
		lan.Close()
	})
	deadline := time.Now().Add(clientWait)
	for !g.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("gateway: no init")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return g, lan
}

// TestSessionClientGateway runs both real sessions in one process against
// the development portal: a CIDR resource round trip, then a DNS resource
// (name resolved by the client's stub to a proxy IP, assigned_ips to the
// gateway, NAT to the real address there and back).
func TestSessionClientGateway(t *testing.T) {
	p := startClientTestPortal(t, "")
	g, lan := startSessionGateway(t, p)
	tc := startTestClient(t, p, ctClientToken, func(cfg *ClientConfig) {
		cfg.SystemResolvers = []netip.Addr{netip.MustParseAddr("127.0.77.2")} // never asked
	})
	tc.waitReady(t)
	st := tc.c.Status()
	src := netip.AddrPortFrom(st.IPv4, 43000)

	dst := netip.MustParseAddrPort("10.99.0.5:7")
	start := time.Now()
	memSend(t, tc.app, clientUDPPacket(nil, src, dst, []byte("cidr")))
	if got := echoUDP(t, lan, dst); string(got.Payload()[8:]) != "cidr" || got.Src() != src.Addr() {
		t.Fatalf("gateway side got %q from %v", got.Payload()[8:], got.Src())
	}
	if r := memRecv(t, tc.app, clientWait, udpTo(src)); string(r.Payload()[8:]) != "cidr" {
		t.Fatalf("reply %q", r.Payload()[8:])
	}
	// Connection set-up as the design's target defines it: first packet
	// to first reply (authorization, ICE, WireGuard handshake, loopback).
	t.Logf("connection set-up (first packet to first reply): %v", time.Since(start))

	// DNS resource.
	a := dnsExchange(t, tc, st.DNS[0], 5360, clientTestQuery(t, "db.app.corp.", mdns.TypeA))
	if len(a.Answer) != 4 {
		t.Fatalf("A answer %v", a)
	}
	proxy, _ := netip.AddrFromSlice(a.Answer[0].(*mdns.A).A.To4())
	pdst := netip.AddrPortFrom(proxy, 5432)
	memSend(t, tc.app, clientUDPPacket(nil, src, pdst, []byte("dns-resource")))
	real := netip.MustParseAddrPort("10.99.0.200:5432")
	got := memRecv(t, lan, clientWait, udpTo(real))
	if string(got.Payload()[8:]) != "dns-resource" {
		t.Fatalf("NATed packet %q", got.Payload()[8:])
	}
	memSend(t, lan, clientUDPPacket(nil, real, netip.AddrPortFrom(got.Src(), got.SrcPort()), []byte("db-reply")))
	r := memRecv(t, tc.app, clientWait, udpTo(src))
	if r.Src() != proxy || string(r.Payload()[8:]) != "db-reply" {
		t.Fatalf("reply from %v: %q (want from the proxy IP %v)", r.Src(), r.Payload()[8:], proxy)
	}
	if s := tc.c.Status(); len(s.Gateways) != 1 || !s.Gateways[0].Connected {
		t.Fatalf("gateways %+v", s.Gateways)
	}

	// Stopping the client says goodbye: the gateway drops the connection
	// at once rather than after ICE times out.
	if n := len(g.Status().Connections); n != 1 {
		t.Fatalf("gateway connections before stop: %d", n)
	}
	tc.stop()
	select {
	case err := <-tc.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		tc.done <- nil
	case <-time.After(clientWait):
		t.Fatal("client did not stop")
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(g.Status().Connections) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("gateway still holds the connection: %+v", g.Status().Connections)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
