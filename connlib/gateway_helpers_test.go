package connlib

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/snownet"
	devportal "github.com/gozone/gozone/examples/portal"
	"github.com/gozone/gozone/phoenix"
	"github.com/gozone/gozone/tun"
)

const gwWait = 30 * time.Second // generous: loaded CI machines

// gwTestLogger logs through t until the test's last cleanup, then goes
// quiet: WireGuard and ICE goroutines may log briefly after Close returns,
// and testing panics on t.Log after a test completed.
func gwTestLogger(t testing.TB) *zap.Logger {
	w := &gwTestWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	enc := zap.NewDevelopmentEncoderConfig()
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zapcore.InfoLevel))
}

type gwTestWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *gwTestWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

const (
	gwTestGatewayToken = "gw-token-hq-0123456789"
	gwTestAliceToken   = "client-token-alice-0123"
)

// gwTestPortalConfig: alice may use web (TCP 80, UDP 53) and svc (a DNS
// resource); crm exists on the same site but alice has no policy for it.
func gwTestPortalConfig(t testing.TB, lifetime string) *devportal.Config {
	return gwTestPortalConfigWith(t, lifetime, "web svc", "80")
}

// gwTestPortalConfigWith: policies for the named resources only, web's TCP
// filter on webPorts.
func gwTestPortalConfigWith(t testing.TB, lifetime, policies, webPorts string) *devportal.Config {
	t.Helper()
	var pol strings.Builder
	for _, r := range strings.Fields(policies) {
		pol.WriteString("  - {group: eng, resource: " + r + "}\n")
	}
	c, err := devportal.ParseConfig([]byte(`
account: {slug: acme}
authorization_lifetime: ` + lifetime + `
sites:
  - {name: hq, gateway_tokens: ["` + gwTestGatewayToken + `"]}
actors:
  - {name: alice, email: alice@example.com, groups: [eng], tokens: ["` + gwTestAliceToken + `"]}
resources:
  - {name: web, type: cidr, address: 172.20.0.0/16, sites: [hq], filters: [{protocol: tcp, ports: "` + webPorts + `"}, {protocol: udp, ports: "53"}]}
  - {name: svc, type: dns, address: "*.svc.test", sites: [hq]}
  - {name: crm, type: cidr, address: 10.50.0.0/16, sites: [hq]}
policies:
` + pol.String() + `relays:
  builtin: {enabled: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func gwStartPortal(t testing.TB, cfg *devportal.Config, listen string) *devportal.Portal {
	t.Helper()
	p, err := devportal.New(devportal.Options{Config: cfg, RelayListen: "127.0.0.1:0", Logger: gwTestLogger(t).Named("portal")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen(listen); err != nil {
		t.Fatal(err)
	}
	return p
}

// gwTestClient is a minimal scripted client: a phoenix client on the
// client channel and a snownet node (ICE controlling) over an in-memory Tun
// whose other end (App) the test reads and writes like an application.
type gwTestClient struct {
	t    testing.TB
	pc   *phoenix.Client
	node *snownet.Node
	App  *tun.MemTun
	Init portal.ClientInit

	mu   sync.Mutex
	msgs []*phoenix.Message
	note chan struct{}
	est  chan string
}

func gwStartClient(t testing.TB, apiURL, token string, log *zap.Logger) *gwTestClient {
	t.Helper()
	a, b := tun.NewMemPair(tun.MemConfig{Name: "cl"})
	node, err := snownet.NewNode(snownet.Config{Tun: NewPipeline(a, nil), Logger: log.Named("cl-snownet"), HostIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	c := &gwTestClient{t: t, node: node, App: b, note: make(chan struct{}, 1), est: make(chan string, 8)}
	t.Cleanup(func() { node.Close(); b.Close() })
	key := node.PublicKey().String()
	pc, err := phoenix.NewClient(phoenix.ClientConfig{
		URL: apiURL + "/client/v2", Token: token, Topic: portal.TopicClient,
		UserAgent: portal.UserAgent(portal.OSInfo{Type: "Ubuntu", Version: "24.04", Arch: "x86_64", Kernel: "6.8.0"}, portal.ComponentHeadlessClient, "1.5.12"),
		Params: func() []phoenix.Param {
			return []phoenix.Param{{Key: "external_id", Value: "test-client-1"}, {Key: "name", Value: "cl"}, {Key: "public_key", Value: key}}
		},
		Logger: log.Named("cl-phoenix"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.pc = pc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		for ev := range pc.Events() {
			m, ok := ev.(*phoenix.Message)
			if !ok {
				continue
			}
			if m.Event == portal.EventIceCandidates {
				var gc portal.GatewayCandidates
				if json.Unmarshal(m.Payload, &gc) == nil {
					for _, sdp := range gc.Candidates {
						_ = node.AddRemoteCandidate(gc.GatewayID, sdp)
					}
				}
				continue
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
			select {
			case c.note <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		for ev := range node.Events() {
			switch ev.Kind {
			case snownet.EventNewCandidate:
				c.push(portal.EventNewGatewayIceCandidates, portal.GatewayCandidates{GatewayID: ev.Peer, Candidates: []string{ev.Candidate}})
			case snownet.EventConnectionEstablished:
				c.est <- ev.Peer
			}
		}
	}()
	raw := c.expect(portal.EventInit)
	if err := json.Unmarshal(raw, &c.Init); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *gwTestClient) push(event string, v any) {
	b, _ := json.Marshal(v)
	deadline := time.Now().Add(gwWait)
	for c.pc.Push(event, b, nil) != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *gwTestClient) expect(event string) json.RawMessage {
	c.t.Helper()
	deadline := time.After(gwWait)
	for {
		c.mu.Lock()
		for i, m := range c.msgs {
			if m.Event == event {
				c.msgs = append(c.msgs[:i], c.msgs[i+1:]...)
				c.mu.Unlock()
				return m.Payload
			}
		}
		c.mu.Unlock()
		select {
		case <-c.note:
		case <-deadline:
			c.t.Fatalf("client: no %s within %v", event, gwWait)
		}
	}
}

func (c *gwTestClient) resourceID(name string) string {
	for _, r := range c.Init.Resources {
		if r.Name == name {
			return r.ID
		}
	}
	c.t.Fatalf("resource %q not in init", name)
	return ""
}

// authorize requests resource name and connects to the gateway the portal
// picks, with allowed (the client's view of what it routes there; a
// misbehaving client may claim anything). It waits for the connection.
func (c *gwTestClient) authorize(name string, allowed ...netip.Prefix) portal.AuthorizationCreated {
	c.t.Helper()
	c.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: c.resourceID(name), ConnectedGatewayIDs: []string{}})
	var ac portal.AuthorizationCreated
	if err := json.Unmarshal(c.expect(portal.EventAuthorizationCreated), &ac); err != nil {
		c.t.Fatal(err)
	}
	pk, _ := snownet.ParseKey(ac.GatewayPublicKey)
	psk, _ := snownet.ParseKey(ac.PresharedKey)
	allowed = append(allowed, netip.PrefixFrom(ac.GatewayIPv4.Addr, 32), netip.PrefixFrom(ac.GatewayIPv6.Addr, 128))
	err := c.node.UpsertConnection(snownet.ConnParams{
		Peer: ac.GatewayID, PublicKey: pk, PresharedKey: psk,
		Local:  snownet.Credentials{Ufrag: ac.ClientICECredentials.Username, Pwd: ac.ClientICECredentials.Password},
		Remote: snownet.Credentials{Ufrag: ac.GatewayICECredentials.Username, Pwd: ac.GatewayICECredentials.Password},
		Role:   snownet.RoleControlling, AllowedIPs: allowed,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.est:
	case <-time.After(gwWait):
		c.t.Fatalf("client: connection to the gateway not established within %v", gwWait)
	}
	return ac
}

// sendApp writes one packet into the client's Tun, as an application would.
func sendPkt(t testing.TB, dev *tun.MemTun, pkt []byte) {
	t.Helper()
	if _, err := dev.Send([][]byte{pkt}, 0); err != nil {
		t.Fatal(err)
	}
}

// recvPkt waits up to d for a packet on dev that match accepts; other
// packets are skipped. ok=false on timeout.
func recvPkt(dev *tun.MemTun, d time.Duration, match func(ippacket.Packet) bool) (ippacket.Packet, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	bufs := [][]byte{make([]byte, 1500)}
	sizes := []int{0}
	for {
		n, err := dev.PollRecvMany(ctx, bufs, sizes, 0)
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

// mkPacket builds an IPv4/IPv6 TCP (SYN), UDP or ICMP echo packet with valid
// checksums.
func mkPacket(proto uint8, src, dst netip.AddrPort, payload []byte) []byte {
	var l4 []byte
	switch proto {
	case ippacket.ProtoTCP:
		l4 = make([]byte, 20+len(payload))
		binary.BigEndian.PutUint16(l4[0:], src.Port())
		binary.BigEndian.PutUint16(l4[2:], dst.Port())
		binary.BigEndian.PutUint32(l4[4:], 1000)
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], payload)
	case ippacket.ProtoUDP:
		l4 = make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(l4[0:], src.Port())
		binary.BigEndian.PutUint16(l4[2:], dst.Port())
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], payload)
	default: // ICMP echo request, id = src port
		l4 = make([]byte, 8+len(payload))
		l4[0] = 8
		if src.Addr().Is6() {
			l4[0] = 128
			proto = ippacket.ProtoICMPv6
		} else {
			proto = ippacket.ProtoICMP
		}
		binary.BigEndian.PutUint16(l4[4:], src.Port())
		copy(l4[8:], payload)
	}
	var b []byte
	if src.Addr().Is4() {
		b = make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[8] = 64
		b[9] = proto
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], l4)
	} else {
		b = make([]byte, 40+len(l4))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
		b[6] = proto
		b[7] = 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		copy(b[40:], l4)
	}
	p, err := ippacket.Parse(b)
	if err != nil {
		panic(err)
	}
	p.FixChecksums()
	return b
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
