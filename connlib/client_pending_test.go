package connlib

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/routing"
)

// clientFakeClock is a manually stepped clock.
type clientFakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClientFakeClock() *clientFakeClock { return &clientFakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *clientFakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clientFakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var (
	ridA = routing.ResourceID{0xa}
	ridB = routing.ResourceID{0xb}
)

func TestClientPendingThrottle(t *testing.T) {
	clk := newClientFakeClock()
	p := newClientPending(clk, 4, 2*time.Second)
	a, b := clientTarget{rid: ridA}, clientTarget{rid: ridB}
	if !p.Add(a, []byte{1}) {
		t.Fatal("first packet must request")
	}
	if p.Add(a, []byte{2}) {
		t.Fatal("second packet within 2 s must not request")
	}
	if !p.Add(b, []byte{1}) {
		t.Fatal("another resource has its own throttle")
	}
	// Another name of the same resource shares the resource's throttle.
	if p.Add(clientTarget{rid: ridA, name: "x.app.corp"}, []byte{3}) {
		t.Fatal("throttle is per resource")
	}
	clk.Advance(1999 * time.Millisecond)
	if p.Add(a, []byte{4}) {
		t.Fatal("1.999 s later must not request")
	}
	clk.Advance(time.Millisecond)
	if !p.Add(a, []byte{5}) {
		t.Fatal("2 s later must request again")
	}
	p.AllowRequest(ridA)
	if !p.Add(a, []byte{6}) {
		t.Fatal("AllowRequest must let the next packet request")
	}
}

func TestClientPendingBufferBound(t *testing.T) {
	clk := newClientFakeClock()
	p := newClientPending(clk, clientBufferPerTarget, clientRequestInterval)
	a := clientTarget{rid: ridA}
	for i := 0; i < clientBufferPerTarget+10; i++ {
		p.Add(a, []byte{byte(i)})
	}
	if n := p.Len(a); n != clientBufferPerTarget {
		t.Fatalf("buffered %d, want %d", n, clientBufferPerTarget)
	}
	if d := p.Dropped(); d != 10 {
		t.Fatalf("dropped %d, want 10", d)
	}
	pkts := p.Take(a)
	if len(pkts) != clientBufferPerTarget || pkts[0][0] != 10 || pkts[len(pkts)-1][0] != byte(clientBufferPerTarget+9) {
		t.Fatalf("kept the wrong packets: first %d last %d", pkts[0][0], pkts[len(pkts)-1][0])
	}
	p.Release(pkts)
	if p.Len(a) != 0 || p.Take(a) != nil {
		t.Fatal("Take must empty the queue")
	}
	// TakeResource with a filter: DNS names wait for their domain_status.
	n1, n2 := clientTarget{rid: ridA, name: "a"}, clientTarget{rid: ridA, name: "b"}
	p.Add(n1, []byte{1})
	p.Add(n2, []byte{2})
	p.Add(clientTarget{rid: ridB}, []byte{3})
	got := p.TakeResource(ridA, func(t clientTarget) bool { return t.name == "a" })
	if len(got) != 1 || got[0][0] != 1 || p.Len(n2) != 1 {
		t.Fatalf("filtered take: %v, b left %d", got, p.Len(n2))
	}
	// Expiry drops what waited too long.
	clk.Advance(31 * time.Second)
	if n := p.Expire(30 * time.Second); n != 2 {
		t.Fatalf("expired %d, want 2", n)
	}
	if !p.Add(n2, []byte{9}) {
		t.Fatal("after expiry the request time is forgotten too")
	}
}

// newHookTestClient is a Client with only what the packet hook reads: a
// routing table, a resolver, the pending buffers and a view.
func newHookTestClient(t testing.TB, clk *clientFakeClock) *Client {
	t.Helper()
	res, err := dns.NewResolver(dns.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{
		clock: clk, table: routing.New(), resolver: res,
		pending: newClientPending(clk, clientBufferPerTarget, clientRequestInterval),
		intents: make(chan routing.ResourceID, 16),
		dnsIn:   make(chan *clientPacket, 16),
		ctrlIn:  make(chan *clientPacket, 16),
	}
	c.pktPool.New = func() any { return &clientPacket{buf: make([]byte, 0, 1500)} }
	c.view.Store(&clientView{ipv4: netip.MustParseAddr("100.64.0.2"), ipv6: netip.MustParseAddr("fd00:2021:1111::2")})
	return c
}

func TestClientHookRouting(t *testing.T) {
	clk := newClientFakeClock()
	c := newHookTestClient(t, clk)
	h := (*clientHook)(c)
	wide, narrow, inet := routing.ResourceID{1}, routing.ResourceID{2}, routing.ResourceID{3}
	c.table.Update(func(e *routing.Editor) {
		e.SetCIDR(wide, netip.MustParsePrefix("10.0.0.0/8"))
		e.SetCIDR(narrow, netip.MustParsePrefix("10.1.0.0/16"))
		e.SetInternet(inet, false)
	})
	src := netip.MustParseAddrPort("100.64.0.2:5000")
	pkt := func(dst string) []byte {
		return clientUDPPacket(nil, src, netip.MustParseAddrPort(dst), []byte("x"))
	}
	intent := func() (routing.ResourceID, bool) {
		select {
		case r := <-c.intents:
			return r, true
		default:
			return routing.ResourceID{}, false
		}
	}

	// Not connected: buffered, one intent for the most specific resource.
	if v := h.FromTun(pkt("10.1.2.3:80")); v != Drop {
		t.Fatal("unconnected resource must not pass")
	}
	if r, ok := intent(); !ok || r != narrow {
		t.Fatalf("intent %v %v, want the /16", r, ok)
	}
	if c.pending.Len(clientTarget{rid: narrow}) != 1 {
		t.Fatal("packet not buffered")
	}
	h.FromTun(pkt("10.1.2.3:80"))
	if _, ok := intent(); ok {
		t.Fatal("second packet within 2 s must not ask again")
	}
	h.FromTun(pkt("10.2.0.1:80"))
	if r, ok := intent(); !ok || r != wide {
		t.Fatalf("intent %v %v, want the /8", r, ok)
	}
	// No resource, internet resource off: dropped, no intent.
	if h.FromTun(pkt("192.0.2.1:80")) != Drop {
		t.Fatal("no route must drop")
	}
	if _, ok := intent(); ok {
		t.Fatal("no intent without a resource")
	}
	// Connected: passes without buffering.
	c.view.Store(&clientView{ipv4: src.Addr(), ready: map[routing.ResourceID]bool{narrow: true}})
	if h.FromTun(pkt("10.1.9.9:80")) != Pass {
		t.Fatal("connected resource must pass")
	}
	if h.FromTun(pkt("10.3.0.1:80")) != Drop {
		t.Fatal("the /8 is not connected")
	}
	// Internet resource on: everything else goes to it.
	c.table.Update(func(e *routing.Editor) { e.SetInternet(inet, true) })
	h.FromTun(pkt("192.0.2.1:80"))
	if r, ok := intent(); !ok || r != inet {
		t.Fatalf("intent %v %v, want the internet resource", r, ok)
	}
	// Reserved ranges never go to the internet resource.
	h.FromTun(pkt("100.64.9.9:80"))
	if _, ok := intent(); ok {
		t.Fatal("a tunnel address must not go to the internet resource")
	}
	// A source other than the tunnel's own address is dropped, even to a
	// connected resource.
	spoofed := clientUDPPacket(nil, netip.MustParseAddrPort("192.168.1.5:5000"), netip.MustParseAddrPort("10.1.9.9:80"), []byte("x"))
	c.view.Store(&clientView{ipv4: src.Addr(), ready: map[routing.ResourceID]bool{narrow: true}})
	if h.FromTun(spoofed) != Drop {
		t.Fatal("spoofed source must drop")
	}
	// Garbage is dropped.
	if h.FromTun([]byte{0x45, 0, 0}) != Drop {
		t.Fatal("garbage must drop")
	}
}

func TestClientHookDNSProxyAndSentinel(t *testing.T) {
	clk := newClientFakeClock()
	c := newHookTestClient(t, clk)
	h := (*clientHook)(c)
	const id = "7b0ac0a4-3b1e-4f5a-9c2d-1e2f3a4b5c6d"
	rid, _ := clientParseID(id)
	if err := c.resolver.UpsertResource(dns.Resource{ID: id, Address: "*.app.corp"}); err != nil {
		t.Fatal(err)
	}
	// Resolve a name through the stub to get its proxy IPs.
	q := clientTestQuery(t, "web.app.corp.", 1)
	out := make([]byte, dns.MaxResponseSize)
	if r, err := c.resolver.HandleQuery(dns.TransportUDP, q, out); err != nil || r.Action != dns.ActionRespond {
		t.Fatalf("HandleQuery: %v %v", r.Action, err)
	}
	ips, ok := c.resolver.ProxyIPsOf("web.app.corp")
	if !ok {
		t.Fatal("no proxy IPs")
	}
	src := netip.MustParseAddrPort("100.64.0.2:5000")
	toProxy := clientUDPPacket(nil, src, netip.AddrPortFrom(ips.V4[2], 443), []byte("x"))
	if h.FromTun(toProxy) != Drop {
		t.Fatal("unconnected DNS resource must not pass")
	}
	if r := <-c.intents; r != rid {
		t.Fatal("intent for the wrong resource")
	}
	target := clientTarget{rid: rid, name: "web.app.corp"}
	if c.pending.Len(target) != 1 {
		t.Fatal("not buffered under the name")
	}
	// Connected but the gateway has not confirmed the name: still held.
	c.view.Store(&clientView{ipv4: src.Addr(), ready: map[routing.ResourceID]bool{rid: true}})
	if h.FromTun(toProxy) != Drop {
		t.Fatal("must wait for domain_status")
	}
	c.view.Store(&clientView{ipv4: src.Addr(), ready: map[routing.ResourceID]bool{rid: true}, active: map[clientTarget]bool{target: true}})
	if h.FromTun(toProxy) != Pass {
		t.Fatal("confirmed name must pass")
	}
	// A proxy IP never handed out is dropped without an intent.
	if h.FromTun(clientUDPPacket(nil, src, netip.MustParseAddrPort("100.96.200.1:443"), []byte("x"))) != Drop {
		t.Fatal("unassigned proxy IP must drop")
	}
	select {
	case <-c.intents:
		t.Fatal("no intent for an unassigned proxy IP")
	default:
	}
	// Queries to a sentinel go to the event loop.
	if h.FromTun(clientUDPPacket(nil, src, netip.MustParseAddrPort("100.100.111.1:53"), q)) != Drop {
		t.Fatal("sentinel query must not pass")
	}
	select {
	case p := <-c.dnsIn:
		if pp, err := ippacket.Parse(p.buf); err != nil || pp.DstPort() != 53 {
			t.Fatal("wrong packet handed over")
		}
	default:
		t.Fatal("sentinel query not handed to the event loop")
	}
}

func TestClientParseID(t *testing.T) {
	id, ok := clientParseID("7B0AC0A4-3b1e-4f5a-9c2d-1e2f3a4b5c6d")
	if !ok || id[0] != 0x7b || id[15] != 0x6d {
		t.Fatalf("%x %v", id, ok)
	}
	a, _ := clientParseID("not-a-uuid")
	b, _ := clientParseID("not-a-uuid2")
	if a == b || a == (routing.ResourceID{}) {
		t.Fatal("non-UUID ids must hash to distinct ids")
	}
	if _, ok := clientParseID(""); ok {
		t.Fatal("empty id")
	}
	if _, ok := clientParseID("zzzzzzzz-3b1e-4f5a-9c2d-1e2f3a4b5c6d"); !ok {
		t.Fatal("bad hex falls back to hashing")
	}
}

// TestClientHookNoAllocs: the steady-state path of a connected resource
// does not allocate.
func TestClientHookNoAllocs(t *testing.T) {
	c := newHookTestClient(t, newClientFakeClock())
	h := (*clientHook)(c)
	rid := routing.ResourceID{1}
	c.table.Update(func(e *routing.Editor) { e.SetCIDR(rid, netip.MustParsePrefix("10.0.0.0/8")) })
	c.view.Store(&clientView{ipv4: netip.MustParseAddr("100.64.0.2"), ready: map[routing.ResourceID]bool{rid: true}})
	pkt := clientUDPPacket(nil, netip.MustParseAddrPort("100.64.0.2:5000"), netip.MustParseAddrPort("10.1.2.3:80"), make([]byte, 1000))
	allocs := testing.AllocsPerRun(1000, func() {
		if h.FromTun(pkt) != Pass || h.ToTun(pkt) != Pass {
			t.Fatal("must pass")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
}
