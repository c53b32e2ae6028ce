package connlib

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/snownet"
)

type gwSent struct {
	mu     sync.Mutex
	events []string
}

func (s *gwSent) send(event string, _ any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, event)
	return nil
}

func (s *gwSent) has(event string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e == event {
			return true
		}
	}
	return false
}

func gwTestCreateAuthorization(t *testing.T) *portal.CreateAuthorization {
	k, err := snownet.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &portal.CreateAuthorization{
		Ref:      "ref-1",
		Resource: gwWebResource,
		Client: portal.AuthorizingClient{ID: "client-9", PublicKey: k.PublicKey().String(), PresharedKey: k.String(),
			IPv4: portal.MustIP("100.64.0.9"), IPv6: portal.MustIP("fd00:2021:1111::9")},
		ClientICECredentials:  portal.ICECredentials{Username: "abcd", Password: "0123456789012345678901"},
		GatewayICECredentials: portal.ICECredentials{Username: "efgh", Password: "1123456789012345678901"},
	}
}

// Without relays the gateway asks for some (no_relays) and does not answer
// the authorization (reference §2.2 step 3); with relays it answers.
func TestGatewayNoRelays(t *testing.T) {
	g, _, _ := gwHookFixture(t)
	var sent gwSent
	if err := g.session.OnJoin(sent.send); err != nil {
		t.Fatal(err)
	}
	ca := gwTestCreateAuthorization(t)
	g.createAuthorization(ca)
	if !sent.has(portal.EventNoRelays) || sent.has(portal.EventAuthorizationCreated) {
		t.Fatalf("sent %v", sent.events)
	}
	if len(g.node.Stats()) != 0 || len(g.clients) != 0 {
		t.Fatal("a connection was made without relays")
	}
	g.handlePortal(context.Background(), portal.Message{Event: portal.EventRelaysPresence, Payload: &portal.RelaysPresence{
		Connected: portal.Relays{{ID: "r1", Type: "turn", Addr: "127.0.0.1:3478", Username: "u", Password: "p"}},
	}})
	g.createAuthorization(ca)
	if !sent.has(portal.EventAuthorizationCreated) || len(g.node.Stats()) != 1 {
		t.Fatalf("with a relay: sent %v, connections %d", sent.events, len(g.node.Stats()))
	}
	// A malformed authorization (bad key) is refused without a reply.
	bad := gwTestCreateAuthorization(t)
	bad.Client.ID, bad.Ref, bad.Client.PublicKey = "client-10", "ref-2", "not-a-key"
	n := len(sent.events)
	g.createAuthorization(bad)
	if len(sent.events) != n || g.clients["client-10"] != nil {
		t.Fatal("bad public key accepted")
	}
	// relays_presence removing the relay leaves the node without relays.
	g.handlePortal(context.Background(), portal.Message{Event: portal.EventRelaysPresence, Payload: &portal.RelaysPresence{DisconnectedIDs: []string{"r1"}}})
	if g.node.HasRelays() {
		t.Fatal("relay not removed")
	}
}

// The :53535 server forwards to the upstream and answers SERVFAIL without
// one; garbage is ignored.
func TestGatewayDNSServer(t *testing.T) {
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: up, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		rr, _ := mdns.NewRR(r.Question[0].Name + " 60 IN TXT \"from-upstream\"")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()

	for _, tc := range []struct {
		upstream []string
		rcode    int
	}{{[]string{up.LocalAddr().String()}, mdns.RcodeSuccess}, {nil, mdns.RcodeServerFailure}} {
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go gwServeDNS(ctx, conn, newGwUpstreams(func() []string { return tc.upstream }, nil), zap.NewNop())
		c, err := net.Dial("udp", conn.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("garbage"))
		m := new(mdns.Msg)
		m.SetQuestion("db.svc.test.", mdns.TypeTXT)
		r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).Exchange(m, conn.LocalAddr().String())
		if err != nil || r.Rcode != tc.rcode || r.Id != m.Id {
			t.Fatalf("upstream %q: %v %v", tc.upstream, r, err)
		}
		if tc.rcode == mdns.RcodeSuccess && len(r.Answer) != 1 {
			t.Fatalf("answer %v", r)
		}
		c.Close()
		cancel()
		conn.Close()
	}
}

// FuzzGatewayHook: arbitrary bytes in either direction never panic and
// nothing malformed passes.
func FuzzGatewayHook(f *testing.F) {
	me := netip.MustParseAddr("100.64.0.2")
	web := netip.MustParseAddr("172.20.1.1")
	f.Add(mkPacket(ippacket.ProtoTCP, ap(me, 1000), ap(web, 80), nil))
	f.Add(mkPacket(ippacket.ProtoUDP, ap(me, 1000), ap(web, 53), []byte("q")))
	f.Add(mkPacket(0, ap(me, 1), ap(web, 0), nil))
	f.Add(mkPacket(ippacket.ProtoTCP, ap(netip.MustParseAddr("fd00:2021:1111::2"), 1), ap(netip.MustParseAddr("fd00:2021:1111:8000::1"), 80), nil))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 0xff, 0})
	f.Add([]byte{})
	g, _, _ := gwHookFixture(f)
	g.nat.setTargets(me, netip.Addr{}, []netip.Addr{netip.MustParseAddr("100.96.0.1")}, []netip.Addr{web})
	gwAddClient(f, g, 2, gwWebResource, time.Time{}, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		if g.hook.ToTun(in) == Pass {
			if _, err := ippacket.Parse(in); err != nil {
				t.Fatalf("malformed packet passed to the Tun: %v", err)
			}
		}
		out := append([]byte(nil), b...)
		if g.hook.FromTun(out) == Pass {
			if _, err := ippacket.Parse(out); err != nil {
				t.Fatalf("malformed packet passed to a client: %v", err)
			}
		}
	})
}
