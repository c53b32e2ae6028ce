package connlib

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/snownet"
	devportal "github.com/gozone/gozone/examples/portal"
	"github.com/gozone/gozone/phoenix"
	"github.com/gozone/gozone/tun"
)

// clientWait bounds every wait in the session tests: generous, as CI
// machines are slow and shared.
const clientWait = 45 * time.Second

const (
	ctGatewayToken = "gw-token-hq-0123456789"
	ctClientToken  = "client-token-alice-0123"
	ctBobToken     = "client-token-bob-012345"
)

// clientTestLogger logs to stderr when CONNLIB_DEBUG is set (pion and
// wireguard goroutines may log after a test returned, so not t.Log).
func clientTestLogger(t testing.TB, name string) *zap.Logger {
	if os.Getenv("CONNLIB_DEBUG") != "" {
		l, err := zap.NewDevelopment()
		if err == nil {
			return l.Named(name)
		}
	}
	return zap.NewNop()
}

// startClientTestPortal runs the development portal on loopback with a
// CIDR resource (10.99.0.0/24) and a DNS resource (*.app.corp) on site hq,
// an "offline" resource on a site without gateways, and policies for
// alice.
func startClientTestPortal(t *testing.T, extra string) *devportal.Portal {
	t.Helper()
	cfg, err := devportal.ParseConfig([]byte(`
account: {slug: acme}
dns: {search_domain: corp.example.com}
sites:
  - {name: hq, gateway_tokens: ["` + ctGatewayToken + `"]}
  - {name: empty, gateway_tokens: ["gw-token-empty-0123456"]}
actors:
  - {name: alice, email: alice@example.com, groups: [eng], tokens: ["` + ctClientToken + `"]}
  - {name: bob, groups: [sales], tokens: ["` + ctBobToken + `"]}
resources:
  - {name: lab, type: cidr, address: 10.99.0.0/24, sites: [hq]}
  - {name: lab-host, type: ip, address: 10.99.0.77, sites: [hq]}
  - {name: app, type: dns, address: "*.app.corp", sites: [hq]}
  - {name: nowhere, type: cidr, address: 10.98.0.0/24, sites: [empty]}
policies:
  - {group: eng, resource: lab}
  - {group: eng, resource: lab-host}
  - {group: eng, resource: app}
  - {group: eng, resource: nowhere}
relays:
  builtin: {enabled: true, public_ip: 127.0.0.1}
` + extra))
	if err != nil {
		t.Fatal(err)
	}
	p, err := devportal.New(devportal.Options{Config: cfg, RelayListen: "127.0.0.1:0", Logger: clientTestLogger(t, "portal")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return p
}

// testClient is a client session on one end of an in-memory Tun pair; app
// is the other end, where the test plays the applications.
type testClient struct {
	c    *Client
	app  *tun.MemTun
	done chan error
	stop context.CancelFunc
}

func startTestClient(t *testing.T, p *devportal.Portal, token string, mod func(*ClientConfig)) *testClient {
	t.Helper()
	return startTestClientOpts(t, p.URL(), token, mod)
}

func startTestClientURL(t *testing.T, url, token string) *testClient {
	t.Helper()
	return startTestClientOpts(t, url, token, nil)
}

func startTestClientOpts(t *testing.T, url, token string, mod func(*ClientConfig)) *testClient {
	t.Helper()
	app, dev := tun.NewMemPair(tun.MemConfig{Name: "client"})
	cfg := ClientConfig{
		Tun: dev, APIURL: url, Token: token, FirezoneID: "laptop-" + t.Name(), Name: "laptop",
		Logger: clientTestLogger(t, "client"), HostIP: netip.MustParseAddr("127.0.0.1"),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &testClient{c: c, app: app, done: make(chan error, 1), stop: cancel}
	go func() { tc.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tc.done:
		case <-time.After(clientWait):
			t.Errorf("client did not stop")
		}
		app.Close()
	})
	return tc
}

func (tc *testClient) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-tc.c.Ready():
	case err := <-tc.done:
		t.Fatalf("client ended before init: %v", err)
	case <-time.After(clientWait):
		t.Fatal("client: no init in time")
	}
}

// memSend writes one packet into a Tun end.
func memSend(t *testing.T, m *tun.MemTun, pkt []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientWait)
	defer cancel()
	if err := m.SendReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := m.Send([][]byte{pkt}, 0); err != nil || n != 1 {
		t.Fatalf("send: %d %v", n, err)
	}
}

// memRecv reads packets from a Tun end until match accepts one.
func memRecv(t *testing.T, m *tun.MemTun, timeout time.Duration, match func(ippacket.Packet) bool) ippacket.Packet {
	t.Helper()
	p, ok := memTryRecv(m, timeout, match)
	if !ok {
		t.Fatalf("%s: no matching packet within %v", m.Name(), timeout)
	}
	return p
}

func memTryRecv(m *tun.MemTun, timeout time.Duration, match func(ippacket.Packet) bool) (ippacket.Packet, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bufs := [][]byte{make([]byte, 2048)}
	sizes := []int{0}
	for {
		n, err := m.PollRecvMany(ctx, bufs, sizes, 0)
		if err != nil {
			return ippacket.Packet{}, false
		}
		if n == 0 {
			continue
		}
		b := append([]byte(nil), bufs[0][:sizes[0]]...)
		p, err := ippacket.Parse(b)
		if err == nil && match(p) {
			return p, true
		}
	}
}

func udpTo(dst netip.AddrPort) func(ippacket.Packet) bool {
	return func(p ippacket.Packet) bool {
		return p.Protocol() == ippacket.ProtoUDP && p.Dst() == dst.Addr() && p.DstPort() == dst.Port()
	}
}

// scriptedGateway is a minimal gateway written against the portal
// protocol directly (phoenix client + snownet node): it accepts every
// create_authorization, relays candidates and exposes its Tun's other
// end as "the resource network". It lets the client session be tested on
// its own, independently of the gateway session.
type scriptedGateway struct {
	t     *testing.T
	node  *snownet.Node
	pc    *phoenix.Client
	lan   *tun.MemTun
	ipv4  netip.Addr
	mu    sync.Mutex
	authz int
	keys  []string // client public keys seen in create_authorization
	init  chan struct{}
	once  sync.Once
}

func startScriptedGateway(t *testing.T, p *devportal.Portal) *scriptedGateway {
	t.Helper()
	return startScriptedGatewayAs(t, p, ctGatewayToken, "gw-1")
}

func startScriptedGatewayAs(t *testing.T, p *devportal.Portal, token, id string) *scriptedGateway {
	t.Helper()
	lan, dev := tun.NewMemPair(tun.MemConfig{Name: "gw"})
	node, err := snownet.NewNode(snownet.Config{Tun: NewWireGuardDevice(dev), Logger: clientTestLogger(t, "gw-snownet"), HostIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	g := &scriptedGateway{t: t, node: node, lan: lan, init: make(chan struct{})}
	pc, err := phoenix.NewClient(phoenix.ClientConfig{
		URL: p.URL() + "/gateway/v2", Token: token, Topic: portal.TopicGateway,
		UserAgent: portal.UserAgent(portal.OSInfo{Type: "Ubuntu", Version: "24.04", Arch: "x86_64", Kernel: "6.8.0"}, portal.ComponentGateway, "1.6.1"),
		Params: func() []phoenix.Param {
			return []phoenix.Param{{Key: "external_id", Value: id}, {Key: "name", Value: id}, {Key: "public_key", Value: node.PublicKey().String()}}
		},
		Logger: clientTestLogger(t, "gw-portal"),
	})
	if err != nil {
		t.Fatal(err)
	}
	g.pc = pc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pc.Run(ctx) }()
	go g.portalLoop()
	go g.nodeLoop()
	t.Cleanup(func() {
		cancel()
		<-done
		node.Close()
		lan.Close()
	})
	select {
	case <-g.init:
	case <-time.After(clientWait):
		t.Fatal("scripted gateway: no init")
	}
	return g
}

func (g *scriptedGateway) push(event string, payload any) {
	b, _ := json.Marshal(payload)
	_ = g.pc.Push(event, b, nil)
}

func (g *scriptedGateway) portalLoop() {
	for ev := range g.pc.Events() {
		m, ok := ev.(*phoenix.Message)
		if !ok {
			continue
		}
		msg, err := portal.DecodeGatewayIngress(m.Event, m.Payload)
		if err != nil {
			continue
		}
		switch pl := msg.Payload.(type) {
		case *portal.GatewayInit:
			g.mu.Lock()
			g.ipv4 = pl.Interface.IPv4.Addr
			g.mu.Unlock()
			var relays []snownet.Relay
			for _, r := range pl.Relays {
				if ap, err := r.AddrPort(); err == nil {
					relays = append(relays, snownet.Relay{ID: r.ID, Addr: ap, Username: r.Username, Password: r.Password})
				}
			}
			_ = g.node.UpdateRelays(relays, nil)
			g.once.Do(func() { close(g.init) })
		case *portal.CreateAuthorization:
			pk, _ := snownet.ParseKey(pl.Client.PublicKey)
			psk, _ := snownet.ParseKey(pl.Client.PresharedKey)
			err := g.node.UpsertConnection(snownet.ConnParams{
				Peer: pl.Client.ID, PublicKey: pk, PresharedKey: psk, Role: snownet.RoleControlled,
				Local:      snownet.Credentials{Ufrag: pl.GatewayICECredentials.Username, Pwd: pl.GatewayICECredentials.Password},
				Remote:     snownet.Credentials{Ufrag: pl.ClientICECredentials.Username, Pwd: pl.ClientICECredentials.Password},
				AllowedIPs: []netip.Prefix{netip.PrefixFrom(pl.Client.IPv4.Addr, 32), netip.PrefixFrom(pl.Client.IPv6.Addr, 128)},
			})
			if err == nil {
				g.mu.Lock()
				g.authz++
				g.keys = append(g.keys, pl.Client.PublicKey)
				g.mu.Unlock()
				g.push(portal.EventAuthorizationCreated, portal.AuthorizationRef{Ref: pl.Ref})
			}
		case *portal.ClientCandidates:
			for _, c := range pl.Candidates {
				_ = g.node.AddRemoteCandidate(pl.ClientID, c)
			}
		}
	}
}

func (g *scriptedGateway) nodeLoop() {
	for ev := range g.node.Events() {
		switch ev.Kind {
		case snownet.EventNewCandidate:
			g.push(portal.EventBroadcastIceCandidates, portal.BroadcastCandidates{ClientIDs: []string{ev.Peer}, Candidates: []string{ev.Candidate}})
		case snownet.EventNoRelays:
			g.push(portal.EventNoRelays, portal.Empty{})
		}
	}
}

func (g *scriptedGateway) clientKeys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.keys...)
}

func (g *scriptedGateway) authorizations() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.authz
}

// echoUDP answers the next UDP packet for dst on the gateway's resource
// side with the same payload, swapping addresses and ports.
func echoUDP(t *testing.T, lan *tun.MemTun, dst netip.AddrPort) ippacket.Packet {
	t.Helper()
	p := memRecv(t, lan, clientWait, udpTo(dst))
	reply := clientUDPPacket(nil, dst, netip.AddrPortFrom(p.Src(), p.SrcPort()), p.Payload()[8:])
	memSend(t, lan, reply)
	return p
}
