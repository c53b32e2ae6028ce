package connlib

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/acl"
	"github.com/gozone/gozone/connlib/ippacket"
	devportal "github.com/gozone/gozone/examples/portal"
	"github.com/gozone/gozone/tun"
)

type gwFixture struct {
	p      *devportal.Portal
	g      *Gateway
	res    *tun.MemTun // the resource side of the gateway's Tun
	cl     *gwTestClient
	runErr chan error
	cancel context.CancelFunc
}

// gwSetup starts a dev portal, a gateway session on an in-memory Tun and a
// scripted client, all on loopback.
func gwSetup(t *testing.T, lifetime string, resolver GatewayResolver) *gwFixture {
	log := gwTestLogger(t)
	p := gwStartPortal(t, gwTestPortalConfig(t, lifetime), "127.0.0.1:0")
	a, b := tun.NewMemPair(tun.MemConfig{Name: "gw"})
	t.Cleanup(func() { b.Close() })
	g, err := NewGateway(GatewayConfig{
		Tun: a, APIURL: p.URL(), Token: gwTestGatewayToken, FirezoneID: "gw-1", Name: "gw-1",
		Logger: log.Named("gateway"), Snownet: GatewaySnownet{HostIP: netip.MustParseAddr("127.0.0.1")},
		Resolver: resolver,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &gwFixture{p: p, g: g, res: b, runErr: make(chan error, 1), cancel: cancel}
	go func() { f.runErr <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.runErr:
		case <-time.After(gwWait):
			t.Error("gateway Run did not return")
		}
	})
	waitFor(t, "gateway ready", g.Ready)
	f.cl = gwStartClient(t, p.URL(), gwTestAliceToken, log)
	return f
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(gwWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGatewaySessionForwardsAndFilters(t *testing.T) {
	f := gwSetup(t, "0s", nil)
	cl := f.cl
	me := cl.Init.Interface.IPv4.Addr
	// The client claims everything so that the gateway, not the client's
	// own routing, has to refuse what it may not reach.
	ac := cl.authorize("web", netip.MustParsePrefix("0.0.0.0/0"))
	web := netip.MustParseAddr("172.20.1.1")

	// 1. Allowed: TCP to port 80 comes out of the gateway's Tun unchanged.
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 40000), ap(web, 80), nil))
	got, ok := recvPkt(f.res, gwWait, func(p ippacket.Packet) bool { return p.Dst() == web })
	if !ok {
		t.Fatal("allowed packet did not reach the resource side")
	}
	if got.Src() != me || got.DstPort() != 80 || got.SrcPort() != 40000 {
		t.Fatalf("forwarded packet %v -> %v", got.Tuple().Src, got.Tuple().Dst)
	}
	// The reply gets back to the client.
	sendPkt(t, f.res, mkPacket(ippacket.ProtoTCP, ap(web, 80), ap(me, 40000), []byte("hi")))
	if _, ok := recvPkt(cl.App, gwWait, func(p ippacket.Packet) bool { return p.Src() == web && p.SrcPort() == 80 }); !ok {
		t.Fatal("reply did not reach the client")
	}
	// UDP 53 is allowed too.
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoUDP, ap(me, 40001), ap(web, 53), []byte("q")))
	if _, ok := recvPkt(f.res, gwWait, func(p ippacket.Packet) bool { return p.DstPort() == 53 }); !ok {
		t.Fatal("UDP 53 did not pass")
	}

	isProhibited := func(dst netip.Addr) func(ippacket.Packet) bool {
		return func(p ippacket.Packet) bool {
			if !p.IsICMP() || p.ICMPType() != 3 || p.ICMPCode() != 13 {
				return false
			}
			q, err := p.ICMPErrorQuote()
			return err == nil && q.Dst() == dst
		}
	}
	// 2. Wrong port: ICMP prohibited comes back, nothing reaches the resource.
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 40002), ap(web, 22), nil))
	if _, ok := recvPkt(cl.App, gwWait, isProhibited(web)); !ok {
		t.Fatal("no ICMP prohibited for a filtered port")
	}
	// 3. Wrong protocol (ICMP echo is not in the filter).
	sendPkt(t, cl.App, mkPacket(0, ap(me, 7), ap(web, 0), []byte("ping")))
	if _, ok := recvPkt(cl.App, gwWait, isProhibited(web)); !ok {
		t.Fatal("no ICMP prohibited for a filtered protocol")
	}
	// 4. Unauthorized resource (crm, same site, no policy).
	crm := netip.MustParseAddr("10.50.0.1")
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 40003), ap(crm, 80), nil))
	if _, ok := recvPkt(cl.App, gwWait, isProhibited(crm)); !ok {
		t.Fatal("no ICMP prohibited for an unauthorized resource")
	}
	// 5. Spoofed source: WireGuard itself drops it (not in the client's
	// allowed IPs); then a good packet proves the path still works and
	// that the spoofed one never came out before it.
	spoof := netip.MustParseAddr("100.64.99.99")
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(spoof, 40004), ap(web, 80), nil))
	sendPkt(t, cl.App, mkPacket(ippacket.ProtoTCP, ap(me, 40005), ap(web, 80), nil))
	got, ok = recvPkt(f.res, gwWait, func(p ippacket.Packet) bool { return p.Dst() == web })
	if !ok || got.Src() != me || got.SrcPort() != 40005 {
		t.Fatalf("after a spoofed packet: ok=%v src=%v:%d", ok, got.Src(), got.SrcPort())
	}
	// 6. An unsolicited packet from the resource side is not let through.
	sendPkt(t, f.res, mkPacket(ippacket.ProtoUDP, ap(web, 9999), ap(me, 5555), []byte("x")))
	waitFor(t, "untracked drop counted", func() bool { return f.g.Status().Drops.Untracked >= 1 })
	if _, ok := recvPkt(cl.App, 300*time.Millisecond, func(p ippacket.Packet) bool { return p.SrcPort() == 9999 }); ok {
		t.Fatal("untracked packet reached the client")
	}

	st := f.g.Status()
	if st.Drops.ByVerdict[acl.DropFiltered] < 2 || st.Drops.ByVerdict[acl.DropNoResource] < 1 || st.Drops.ICMPSent < 3 {
		t.Fatalf("drop counters %+v", st.Drops)
	}
	if len(st.Connections) != 1 || st.Connections[0].Peer == "" {
		t.Fatalf("status connections %+v", st.Connections)
	}
	_ = ac
}

func TestGatewayRejectsWithoutToken(t *testing.T) {
	p := gwStartPortal(t, gwTestPortalConfig(t, "0s"), "127.0.0.1:0")
	a, b := tun.NewMemPair(tun.MemConfig{Name: "gwbad"})
	defer b.Close()
	g, err := NewGateway(GatewayConfig{Tun: a, APIURL: p.URL(), Token: "wrong-token-0123456789", FirezoneID: "gw-x",
		Logger: gwTestLogger(t), Snownet: GatewaySnownet{HostIP: netip.MustParseAddr("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gwWait)
	defer cancel()
	err = g.Run(ctx)
	if !errors.Is(err, ErrGatewayTokenRejected) {
		t.Fatalf("Run with a wrong token: %v", err)
	}
}
