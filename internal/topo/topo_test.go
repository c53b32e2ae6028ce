package topo

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tcpEcho serves one-line echoes on ap inside h until cleanup.
func tcpEcho(t *testing.T, h *Host, ap netip.AddrPort) {
	t.Helper()
	l, err := h.ListenTCP(ap)
	must(t, err)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// tcpReach reports whether from can open a TCP connection to ap and get an
// echo back.
func tcpReach(from *Host, ap netip.AddrPort) error {
	c, err := from.DialTCP(ap, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping " + from.Name)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func TestReachability(t *testing.T) {
	netns.RequireRoot(t)
	for _, nat := range []NAT{NATEndpointIndependent, NATNone} {
		t.Run(nat.String(), func(t *testing.T) {
			tp := Build(t, Options{ClientNAT: nat, GatewayNAT: nat, IPv6: true})
			for _, h := range tp.Hosts() {
				if !h.IPv4.Is4() || !h.IPv6.Is6() {
					t.Fatalf("%s: addresses %v %v", h.Name, h.IPv4, h.IPv6)
				}
			}
			for _, v6 := range []bool{false, true} {
				pick := func(h *Host) netip.Addr {
					if v6 {
						return h.IPv6
					}
					return h.IPv4
				}
				for _, srv := range []*Host{tp.Portal, tp.Resource, tp.Client} {
					tcpEcho(t, srv, netip.AddrPortFrom(pick(srv), 7000))
				}
				portal := netip.AddrPortFrom(pick(tp.Portal), 7000)
				resource := netip.AddrPortFrom(pick(tp.Resource), 7000)
				client := netip.AddrPortFrom(pick(tp.Client), 7000)
				// Everyone reaches the internet; only the gateway the resource.
				for _, h := range []*Host{tp.Client, tp.Gateway, tp.Relay, tp.ClientRouter} {
					if err := tcpReach(h, portal); err != nil {
						t.Errorf("%s → portal %s: %v", h.Name, portal, err)
					}
				}
				if err := tcpReach(tp.Gateway, resource); err != nil {
					t.Errorf("gateway → resource %s: %v", resource, err)
				}
				for _, h := range []*Host{tp.Client, tp.ClientRouter, tp.GatewayRouter, tp.Portal} {
					if err := tcpReach(h, resource); err == nil {
						t.Errorf("%s reached the resource %s; only the gateway may", h.Name, resource)
					}
				}
				// Behind a NAT the client LAN is unreachable from outside;
				// without NAT it is routed like a public host.
				err := tcpReach(tp.Portal, client)
				if nat == NATNone && err != nil {
					t.Errorf("portal → client %s without NAT: %v", client, err)
				}
				if nat != NATNone && err == nil {
					t.Errorf("portal reached client %s behind %v NAT", client, nat)
				}
			}
		})
	}
}

// mapping sends from one socket of h to the two reflectors and returns the
// sources they saw.
func mapping(t *testing.T, h *Host, local netip.Addr, refl ...netip.AddrPort) []netip.AddrPort {
	t.Helper()
	c, err := h.ListenUDP(netip.AddrPortFrom(local, 0))
	must(t, err)
	var seen []netip.AddrPort
	buf := make([]byte, 256)
	for _, r := range refl {
		var got netip.AddrPort
		for try := 0; try < 5 && !got.IsValid(); try++ {
			if _, err := c.WriteToUDPAddrPort([]byte("who am i"), r); err != nil {
				t.Fatalf("%s → %s: %v", h.Name, r, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil || from != r {
				continue
			}
			got, err = netip.ParseAddrPort(string(buf[:n]))
			if err != nil {
				t.Fatalf("reflector %s said %q: %v", r, buf[:n], err)
			}
		}
		if !got.IsValid() {
			t.Fatalf("%s: no answer from reflector %s", h.Name, r)
		}
		seen = append(seen, got)
	}
	return seen
}

func TestNATMapping(t *testing.T) {
	netns.RequireRoot(t)
	for _, nat := range []NAT{NATEndpointIndependent, NATSymmetric, NATNone} {
		t.Run(nat.String(), func(t *testing.T) {
			tp := Build(t, Options{ClientNAT: nat, GatewayNAT: nat, IPv6: true})
			for _, v6 := range []bool{false, true} {
				pick := func(h *Host) netip.Addr {
					if v6 {
						return h.IPv6
					}
					return h.IPv4
				}
				r1 := netip.AddrPortFrom(pick(tp.Portal), 3478)
				r2 := netip.AddrPortFrom(pick(tp.Relay), 3478)
				must(t, tp.Portal.UDPSourceEcho(r1))
				must(t, tp.Relay.UDPSourceEcho(r2))
				for _, site := range [][2]*Host{{tp.Client, tp.ClientRouter}, {tp.Gateway, tp.GatewayRouter}} {
					h, router := site[0], site[1]
					seen := mapping(t, h, pick(h), r1, r2)
					a, b := seen[0], seen[1]
					t.Logf("%s v6=%v: %s sees %v, %s sees %v", h.Name, v6, r1, a, r2, b)
					switch nat {
					case NATNone:
						if a.Addr() != pick(h) || b.Addr() != pick(h) || a.Port() != b.Port() {
							t.Errorf("%s without NAT: seen as %v and %v, want its own address %v", h.Name, a, b, pick(h))
						}
					case NATEndpointIndependent:
						if a.Addr() != pick(router) || a != b {
							t.Errorf("%s behind endpoint-independent NAT: seen as %v and %v, want one mapping on %v", h.Name, a, b, pick(router))
						}
					case NATSymmetric:
						// fully-random: two destinations share a port with
						// probability ~1/64000.
						if a.Addr() != pick(router) || b.Addr() != pick(router) || a.Port() == b.Port() {
							t.Errorf("%s behind symmetric NAT: seen as %v and %v, want two ports on %v", h.Name, a, b, pick(router))
						}
					}
				}
			}
		})
	}
}

// TestDropPercent sends a bounded burst from the client to the portal
// (clean path) and to the relay (30 % drop on the relay's link) and checks
// the received shares with a wide tolerance.
func TestDropPercent(t *testing.T) {
	netns.RequireRoot(t)
	tp := Build(t, Options{DropPercent: map[Link]int{LinkRelay: 30}})
	count := func(h *Host) *atomic.Int64 {
		c, err := h.ListenUDP(netip.AddrPortFrom(h.IPv4, 9000))
		must(t, err)
		must(t, c.SetReadBuffer(4<<20))
		var n atomic.Int64
		go func() {
			buf := make([]byte, 64)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				n.Add(1)
			}
		}()
		return &n
	}
	toPortal, toRelay := count(tp.Portal), count(tp.Relay)
	c, err := tp.Client.ListenUDP(netip.AddrPortFrom(tp.Client.IPv4, 0))
	must(t, err)
	const sent = 2000
	dstP := netip.AddrPortFrom(tp.Portal.IPv4, 9000)
	dstR := netip.AddrPortFrom(tp.Relay.IPv4, 9000)
	for i := 0; i < sent; i++ {
		for _, d := range []netip.AddrPort{dstP, dstR} {
			if _, err := c.WriteToUDPAddrPort([]byte("x"), d); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond) // keep queues short on a slow machine
		}
	}
	// Wait (bounded) until the clean path has everything or nothing moves.
	last := int64(-1)
	for i := 0; i < 50 && toPortal.Load() < sent; i++ {
		time.Sleep(100 * time.Millisecond)
		cur := toPortal.Load() + toRelay.Load()
		if cur == last && i > 10 {
			break
		}
		last = cur
	}
	p, r := float64(toPortal.Load())/sent, float64(toRelay.Load())/sent
	t.Logf("received: portal %.1f%% (no drop), relay %.1f%% (30%% drop)", 100*p, 100*r)
	if p < 0.97 {
		t.Errorf("clean path delivered %.1f%%, want ~100%%", 100*p)
	}
	if r < 0.55 || r > 0.85 {
		t.Errorf("30%% drop link delivered %.1f%%, want ~70%%", 100*r)
	}
}

func TestBuildRejectsBadDrop(t *testing.T) {
	// No root needed: validation happens before anything is created.
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		Build(ft, Options{DropPercent: map[Link]int{LinkRelay: 101}})
	}()
	if !ft.failed {
		t.Fatal("Build accepted DropPercent 101")
	}
}

// fatalRecorder turns Fatalf into a recorded failure plus panic, so a test
// can check that Build refuses bad options.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	panic(fmt.Sprintf(format, args...))
}

// punch runs a simultaneous-open UDP hole punch between the client and the
// gateway: each learns its outside address from the portal's reflector,
// then both send to the other's learned address until each has heard the
// other (bounded). It reports whether both directions got through.
func punch(t *testing.T, tp *Topology) bool {
	t.Helper()
	refl := netip.AddrPortFrom(tp.Portal.IPv4, 3478)
	must(t, tp.Portal.UDPSourceEcho(refl))
	cc, err := tp.Client.ListenUDP(netip.AddrPortFrom(tp.Client.IPv4, 0))
	must(t, err)
	gc, err := tp.Gateway.ListenUDP(netip.AddrPortFrom(tp.Gateway.IPv4, 0))
	must(t, err)
	learn := func(c *net.UDPConn) netip.AddrPort {
		buf := make([]byte, 128)
		for i := 0; i < 5; i++ {
			_, _ = c.WriteToUDPAddrPort([]byte("?"), refl)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err == nil && from == refl {
				ap, err := netip.ParseAddrPort(string(buf[:n]))
				must(t, err)
				return ap
			}
		}
		t.Fatal("no answer from the reflector")
		return netip.AddrPort{}
	}
	cOut, gOut := learn(cc), learn(gc)
	var heardC, heardG atomic.Bool // client heard gateway, gateway heard client
	listen := func(c *net.UDPConn, peer netip.AddrPort, heard *atomic.Bool) {
		buf := make([]byte, 128)
		_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "punch" {
				heard.Store(true)
			}
		}
	}
	done := make(chan struct{}, 2)
	go func() { listen(cc, gOut, &heardC); done <- struct{}{} }()
	go func() { listen(gc, cOut, &heardG); done <- struct{}{} }()
	// The client starts first, so its probe hits the gateway's router
	// before the gateway has sent anything, the hard case.
	for i := 0; i < 20 && !(heardC.Load() && heardG.Load()); i++ {
		_, _ = cc.WriteToUDPAddrPort([]byte("punch"), gOut)
		time.Sleep(20 * time.Millisecond)
		_, _ = gc.WriteToUDPAddrPort([]byte("punch"), cOut)
		time.Sleep(80 * time.Millisecond)
	}
	_ = cc.SetReadDeadline(time.Now())
	_ = gc.SetReadDeadline(time.Now())
	<-done
	<-done
	return heardC.Load() && heardG.Load()
}

// TestHolePunch: two endpoint-independent NATs let a simultaneous open
// through; a symmetric NAT on one side defeats it (what forces a relay).
func TestHolePunch(t *testing.T) {
	netns.RequireRoot(t)
	for _, c := range []struct {
		client, gateway NAT
		want            bool
	}{
		{NATEndpointIndependent, NATEndpointIndependent, true},
		{NATSymmetric, NATEndpointIndependent, false},
	} {
		t.Run(c.client.String()+"-"+c.gateway.String(), func(t *testing.T) {
			tp := Build(t, Options{ClientNAT: c.client, GatewayNAT: c.gateway})
			if got := punch(t, tp); got != c.want {
				t.Fatalf("hole punch succeeded=%v, want %v", got, c.want)
			}
		})
	}
}
