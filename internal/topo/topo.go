// Package topo builds gozone's end-to-end test topology out of network
// namespaces (internal/netns), modelled on Firezone's docker-compose e2e
// setup:
//
//	client ── client-router ──┐                         ┌── gateway-router ── gateway ── resource
//	172.30.0.100   (NAT)      │   "internet" 203.0.113.0/24   │   (NAT)     172.31.0.100   10.20.0.110
//	                          └──── bridge: portal .10, relay .101 ────┘
//
// Every host is its own namespace; the "internet" is a Linux bridge in a
// namespace of its own. The routers masquerade what leaves their WAN link,
// endpoint-independently (plain masquerade: hole punching works) or
// symmetrically (`masquerade random,fully-random`: a new outside port per
// destination, so only a relay works), or not at all (NATNone: the LAN is
// routed and reachable from the internet like a public host). NAT routers
// also drop new inbound TCP/UDP addressed to themselves (default deny). The resource
// network hangs off the gateway only, so it is reachable from the gateway's
// namespace and from nowhere else.
//
// With Options.IPv6 every segment also gets an IPv6 /64: documentation
// space on the internet (2001:db8:113::/64) and ULA behind the routers
// (fd00:172:30::/64, fd00:172:31::/64, fd00:10:20::/64); the routers then
// masquerade IPv6 too (NAT66), because ULA is not routable on the internet.
//
// All addresses exist only inside namespaces the test creates, and
// everything is torn down by t.Cleanup (the namespaces' deletion removes
// links, bridge and nftables rules; processes started with Host.Start are
// stopped first).
package topo

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/gozone/gozone/internal/netns"
)

// NAT selects what a site's router does to traffic leaving its WAN link.
type NAT int

const (
	// NATEndpointIndependent is plain masquerade: an inside socket keeps one
	// outside address and port for every destination (when the port is
	// free), so STUN-discovered candidates work and hole punching succeeds.
	// It is the zero value, like most home routers.
	NATEndpointIndependent NAT = iota
	// NATSymmetric is `masquerade random,fully-random`: every new
	// destination gets a random outside port, so a server-reflexive
	// candidate is useless to other peers and ICE has to use a relay.
	NATSymmetric
	// NATNone routes the LAN without translation; the other internet hosts
	// get routes to it, as if the site had public addresses.
	NATNone
)

func (n NAT) String() string {
	switch n {
	case NATEndpointIndependent:
		return "endpoint-independent"
	case NATSymmetric:
		return "symmetric"
	case NATNone:
		return "none"
	}
	return fmt.Sprintf("NAT(%d)", int(n))
}

// Link names one segment of the topology for DropPercent. The drop rule
// sits on one end of the link and matches both directions, so a packet
// crossing the link is dropped with about the configured probability.
type Link int

const (
	LinkClientLAN  Link = iota // client ↔ client-router (rule on the router's lan0)
	LinkClientWAN              // client-router ↔ internet (rule on the router's wan0)
	LinkGatewayLAN             // gateway ↔ gateway-router (rule on the router's lan0)
	LinkGatewayWAN             // gateway-router ↔ internet (rule on the router's wan0)
	LinkResource               // gateway ↔ resource (rule on the gateway's res0)
	LinkRelay                  // relay ↔ internet (rule on the relay's eth0)
	LinkPortal                 // portal ↔ internet (rule on the portal's eth0)
)

func (l Link) String() string {
	switch l {
	case LinkClientLAN:
		return "client-lan"
	case LinkClientWAN:
		return "client-wan"
	case LinkGatewayLAN:
		return "gateway-lan"
	case LinkGatewayWAN:
		return "gateway-wan"
	case LinkResource:
		return "resource"
	case LinkRelay:
		return "relay"
	case LinkPortal:
		return "portal"
	}
	return fmt.Sprintf("Link(%d)", int(l))
}

// Options configures Build. The zero value is two sites behind
// endpoint-independent NATs, IPv4 only, no loss.
type Options struct {
	ClientNAT  NAT
	GatewayNAT NAT
	// DropPercent drops about that share (0..100) of the packets crossing a
	// link, in each direction (nftables `numgen random mod 100 < N`).
	DropPercent map[Link]int
	// IPv6 adds an IPv6 address to every interface and IPv6 default routes.
	IPv6 bool
}

// Addresses of the topology. They are fixed so that logs and failures read
// the same in every run; namespaces isolate concurrent tests.
var (
	InternetV4   = netip.MustParsePrefix("203.0.113.0/24")
	InternetV6   = netip.MustParsePrefix("2001:db8:113::/64")
	ClientLANV4  = netip.MustParsePrefix("172.30.0.0/24")
	ClientLANV6  = netip.MustParsePrefix("fd00:172:30::/64")
	GatewayLANV4 = netip.MustParsePrefix("172.31.0.0/24")
	GatewayLANV6 = netip.MustParsePrefix("fd00:172:31::/64")
	ResourceV4   = netip.MustParsePrefix("10.20.0.0/24")
	ResourceV6   = netip.MustParsePrefix("fd00:10:20::/64")
)

// Topology is what Build returns: one Host per role.
type Topology struct {
	Opts Options
	// Internet is the namespace holding the bridge "br0" that joins the
	// WAN links; it has no addresses of its own.
	Internet *netns.NS

	Client        *Host
	ClientRouter  *Host
	Gateway       *Host
	GatewayRouter *Host
	Resource      *Host
	Relay         *Host
	Portal        *Host
}

// Hosts lists every host, for loops in tests.
func (tp *Topology) Hosts() []*Host {
	return []*Host{tp.Client, tp.ClientRouter, tp.Gateway, tp.GatewayRouter, tp.Resource, tp.Relay, tp.Portal}
}

// addr returns the host with index h (the last byte / last group) in the v4
// and v6 prefixes.
func addr(v4, v6 netip.Prefix, h byte) (netip.Prefix, netip.Prefix) {
	a4 := v4.Addr().As4()
	a4[3] = h
	// The IPv6 host part spells the IPv4 one in decimal: .100 → ::100.
	a6 := v6.Addr().As16()
	d := uint16(h/100)<<8 | uint16(h/10%10)<<4 | uint16(h%10)
	a6[14], a6[15] = byte(d>>8), byte(d)
	return netip.PrefixFrom(netip.AddrFrom4(a4), v4.Bits()), netip.PrefixFrom(netip.AddrFrom16(a6), v6.Bits())
}

// builder carries Build's state so each step reads as one line.
type builder struct {
	t   testing.TB
	o   Options
	err error
}

func (b *builder) do(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

// addrs assigns the v4 (and, with IPv6, v6) address to link in h.
func (b *builder) addrs(h *Host, link string, v4, v6 netip.Prefix) {
	b.do(h.NS.AddAddr(link, v4))
	if b.o.IPv6 {
		b.do(h.NS.AddAddr(link, v6))
	}
}

func (b *builder) defaultRoute(h *Host, via4, via6 netip.Addr) {
	b.do(h.NS.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), via4, ""))
	if b.o.IPv6 {
		b.do(h.NS.AddRoute(netip.MustParsePrefix("::/0"), via6, ""))
	}
}

// Build creates the topology and registers its teardown with t.Cleanup. It
// calls t.Fatal when a step fails (the parts already created are removed
// by their own cleanups).
func Build(t testing.TB, o Options) *Topology {
	t.Helper()
	for l, p := range o.DropPercent {
		if p < 0 || p > 100 || l < LinkClientLAN || l > LinkPortal {
			t.Fatalf("topo: bad DropPercent %v=%d", l, p)
		}
	}
	b := &builder{t: t, o: o}
	tp := &Topology{Opts: o, Internet: netns.New(t, "tpnet")}
	// No duplicate address detection anywhere: links created later copy
	// "default", and a tentative link-local address delays neighbour
	// discovery by a second or two after Build returns.
	noDAD := func(n *netns.NS) *netns.NS {
		b.do(n.Sysctl("net.ipv6.conf.default.accept_dad", "0"))
		b.do(n.Sysctl("net.ipv6.conf.all.accept_dad", "0"))
		return n
	}
	noDAD(tp.Internet)
	newHost := func(role, prefix string) *Host {
		return &Host{Name: role, NS: noDAD(netns.New(t, prefix)), t: t}
	}
	tp.Client = newHost("client", "tpcli")
	tp.ClientRouter = newHost("client-router", "tpcrt")
	tp.Gateway = newHost("gateway", "tpgw")
	tp.GatewayRouter = newHost("gateway-router", "tpgrt")
	tp.Resource = newHost("resource", "tpres")
	tp.Relay = newHost("relay", "tprly")
	tp.Portal = newHost("portal", "tpptl")

	// The internet: a bridge with multicast snooping off, so IPv6 neighbour
	// discovery is flooded from the first packet.
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, MulticastSnooping: &off}
	b.do(tp.Internet.Netlink().LinkAdd(br))
	b.do(tp.Internet.LinkUp("br0"))
	if b.err != nil {
		t.Fatalf("topo: internet bridge: %v", b.err)
	}
	attach := func(h *Host, port, link string, idx byte) {
		b.do(netns.Veth(tp.Internet, port, h.NS, link))
		if b.err != nil {
			return
		}
		l, err := tp.Internet.Netlink().LinkByName(port)
		b.do(err)
		if err == nil {
			b.do(tp.Internet.Netlink().LinkSetMaster(l, br))
		}
		v4, v6 := addr(InternetV4, InternetV6, idx)
		b.addrs(h, link, v4, v6)
		h.Iface, h.IPv4, h.IPv6 = link, v4.Addr(), v6.Addr()
	}
	attach(tp.ClientRouter, "p-crt", "wan0", 2)
	attach(tp.GatewayRouter, "p-grt", "wan0", 3)
	attach(tp.Portal, "p-ptl", "eth0", 10)
	attach(tp.Relay, "p-rly", "eth0", 101)

	// site joins host to router over a LAN: router .1, host .100.
	site := func(host, router *Host, v4p, v6p netip.Prefix, nat NAT) {
		b.do(netns.Veth(router.NS, "lan0", host.NS, "eth0"))
		r4, r6 := addr(v4p, v6p, 1)
		h4, h6 := addr(v4p, v6p, 100)
		b.addrs(router, "lan0", r4, r6)
		b.addrs(host, "eth0", h4, h6)
		router.InnerIface, router.InnerIPv4, router.InnerIPv6 = "lan0", r4.Addr(), r6.Addr()
		host.Iface, host.IPv4, host.IPv6 = "eth0", h4.Addr(), h6.Addr()
		b.defaultRoute(host, r4.Addr(), r6.Addr())
		b.do(router.NS.EnableForwarding())
		switch nat {
		case NATEndpointIndependent:
			b.do(router.NS.Masquerade("wan0", netns.EndpointIndependent))
			// Default deny inbound, as home routers do; without it a
			// peer's early probe would disturb the mapping (see
			// netns.DropInboundNew) and hole punching would fail.
			b.do(router.NS.DropInboundNew("wan0"))
		case NATSymmetric:
			b.do(router.NS.Masquerade("wan0", netns.Symmetric))
			b.do(router.NS.DropInboundNew("wan0"))
		case NATNone:
			// A routed site: every other internet host learns the LAN.
			for _, o := range []*Host{tp.ClientRouter, tp.GatewayRouter, tp.Portal, tp.Relay} {
				if o == router {
					continue
				}
				b.do(o.NS.AddRoute(v4p, router.IPv4, ""))
				if b.o.IPv6 {
					b.do(o.NS.AddRoute(v6p, router.IPv6, ""))
				}
			}
		default:
			b.do(fmt.Errorf("unknown NAT %v", nat))
		}
	}
	site(tp.Client, tp.ClientRouter, ClientLANV4, ClientLANV6, o.ClientNAT)
	site(tp.Gateway, tp.GatewayRouter, GatewayLANV4, GatewayLANV6, o.GatewayNAT)

	// The resource network behind the gateway. The gateway forwards (its
	// tunnel traffic goes out of res0) and the resource's default route
	// points back at it, so replies to tunnel addresses find their way.
	b.do(netns.Veth(tp.Gateway.NS, "res0", tp.Resource.NS, "eth0"))
	g4, g6 := addr(ResourceV4, ResourceV6, 1)
	r4, r6 := addr(ResourceV4, ResourceV6, 110)
	b.addrs(tp.Gateway, "res0", g4, g6)
	b.addrs(tp.Resource, "eth0", r4, r6)
	tp.Gateway.InnerIface, tp.Gateway.InnerIPv4, tp.Gateway.InnerIPv6 = "res0", g4.Addr(), g6.Addr()
	tp.Resource.Iface, tp.Resource.IPv4, tp.Resource.IPv6 = "eth0", r4.Addr(), r6.Addr()
	b.defaultRoute(tp.Resource, g4.Addr(), g6.Addr())
	b.do(tp.Gateway.NS.EnableForwarding())

	for l, p := range o.DropPercent {
		if p == 0 {
			continue
		}
		h, link := tp.dropEnd(l)
		b.do(h.NS.RandomDrop(link, p))
	}
	if !o.IPv6 {
		for _, h := range tp.Hosts() {
			h.IPv6, h.InnerIPv6 = netip.Addr{}, netip.Addr{}
		}
	}
	if b.err != nil {
		t.Fatalf("topo: %v", b.err)
	}
	return tp
}

// dropEnd is the host and interface that carry a link's drop rule.
func (tp *Topology) dropEnd(l Link) (*Host, string) {
	switch l {
	case LinkClientLAN:
		return tp.ClientRouter, "lan0"
	case LinkClientWAN:
		return tp.ClientRouter, "wan0"
	case LinkGatewayLAN:
		return tp.GatewayRouter, "lan0"
	case LinkGatewayWAN:
		return tp.GatewayRouter, "wan0"
	case LinkResource:
		return tp.Gateway, "res0"
	case LinkRelay:
		return tp.Relay, "eth0"
	default:
		return tp.Portal, "eth0"
	}
}
