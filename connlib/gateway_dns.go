package connlib

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/portal"
)

// dnsResolveTimeout bounds resolving a DNS resource's domain (reference
// §6.1: 10 s).
const dnsResolveTimeout = 10 * time.Second

// maxConcurrentResolves bounds in-flight resolutions (reference: 1000).
const maxConcurrentResolves = 1000

type gwResolveResult struct {
	clientID, resource, domain string
	proxies, reals             []netip.Addr
	err                        error
}

// assignedIPs handles a client's assigned_ips: check the client may use the
// resource and the domain belongs to it, then resolve the domain off the
// loop (handleResolved finishes).
func (g *Gateway) assignedIPs(ctx context.Context, c *gwClient, m *p2pcontrol.AssignedIPs) {
	if m == nil {
		return
	}
	log := g.log.With(zap.String("client", c.id), zap.String("resource", m.Resource))
	res, ok := c.resources[gwID(m.Resource)]
	if !ok || res.Type != portal.ResourceDNS {
		log.Info("assigned_ips for a resource the client is not authorized for")
		g.sendDomainStatus(c, m.Resource, m.Domain, false)
		return
	}
	pat, err := dns.ParsePattern(res.Address)
	if err != nil || !pat.Match(m.Domain) {
		log.Info("assigned_ips for a domain outside the resource", zap.String("domain", m.Domain))
		g.sendDomainStatus(c, m.Resource, m.Domain, false)
		return
	}
	key := c.id + "\x00" + m.Domain
	if g.resolving == nil {
		g.resolving = make(map[string]bool)
	}
	if g.resolving[key] {
		return // the client retries every 2 s; one resolution is enough
	}
	if len(g.resolving) >= maxConcurrentResolves {
		log.Warn("too many DNS resolutions in flight; dropping assigned_ips")
		return
	}
	g.resolving[key] = true
	resolver := g.cfg.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	r := gwResolveResult{clientID: c.id, resource: m.Resource, domain: m.Domain, proxies: m.ProxyIPs}
	go func() {
		rctx, cancel := context.WithTimeout(ctx, dnsResolveTimeout)
		defer cancel()
		var errs []error
		for _, network := range []string{"ip4", "ip6"} {
			addrs, err := resolver.LookupNetIP(rctx, network, m.Domain)
			if err != nil {
				errs = append(errs, err)
			}
			for _, a := range addrs {
				r.reals = append(r.reals, a.Unmap())
			}
		}
		if len(r.reals) == 0 {
			r.err = errors.Join(errs...)
		}
		select {
		case g.resolveC <- r:
		case <-ctx.Done():
		}
	}()
}

func (g *Gateway) handleResolved(r gwResolveResult) {
	delete(g.resolving, r.clientID+"\x00"+r.domain)
	c := g.clients[r.clientID]
	if c == nil {
		return
	}
	log := g.log.With(zap.String("client", c.id), zap.String("resource", r.resource), zap.String("domain", r.domain))
	if len(r.reals) == 0 {
		log.Info("DNS resource name did not resolve", zap.Error(r.err))
		g.sendDomainStatus(c, r.resource, r.domain, false)
		return
	}
	g.nat.setTargets(c.v4, c.v6, r.proxies, r.reals)
	if err := g.acl.SetProxyIPs(c.aclID, gwID(r.resource), r.domain, r.proxies); err != nil {
		log.Warn("setting proxy IPs", zap.Error(err))
		g.sendDomainStatus(c, r.resource, r.domain, false)
		return
	}
	log.Info("DNS resource NAT active", zap.Int("addresses", len(r.reals)))
	g.sendDomainStatus(c, r.resource, r.domain, true)
}

// startDNSServer (re)binds the DNS server on <tun ipv4>:53535 and
// [<tun ipv6>]:53535, three tries 100 ms apart each (the address may still
// be settling). Failure is logged: forwarding of other traffic does not
// depend on it.
func (g *Gateway) startDNSServer(ctx context.Context) {
	for _, c := range g.dnsConns {
		c.Close()
	}
	g.dnsConns = nil
	listen := g.cfg.ListenPacket
	if listen == nil {
		listen = net.ListenPacket
	}
	upstreams := newGwUpstreams(resolvConfServers("/etc/resolv.conf"), nil)
	for _, ip := range []netip.Addr{g.iface.IPv4, g.iface.IPv6} {
		if !ip.IsValid() {
			continue
		}
		addr := netip.AddrPortFrom(ip, dns.GatewayDNSPort).String()
		var conn net.PacketConn
		var err error
		for i := 0; i < 3; i++ {
			if conn, err = listen("udp", addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			g.log.Warn("gateway DNS server not started", zap.String("addr", addr), zap.Error(err))
			continue
		}
		g.dnsConns = append(g.dnsConns, conn)
		g.log.Info("gateway DNS server listening", zap.String("addr", addr), zap.Strings("upstreams", upstreams.order()))
		go gwServeDNS(ctx, conn, upstreams, g.log.Named("dns"))
	}
}

// gwServeDNS forwards each query to the fastest system nameserver (the next
// one if that fails) and relays the answer; SERVFAIL when there is none or
// every attempt fails. Garbage is dropped.
func gwServeDNS(ctx context.Context, conn net.PacketConn, upstreams *gwUpstreams, log *zap.Logger) {
	sem := make(chan struct{}, 64)
	buf := make([]byte, 65535)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		q := new(mdns.Msg)
		if q.Unpack(buf[:n]) != nil || q.Response || len(q.Question) != 1 {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // overloaded: the client retries
		}
		go func() {
			defer func() { <-sem }()
			var resp *mdns.Msg
			c := &mdns.Client{Timeout: gwUpstreamAttempt}
			for i, upstream := range upstreams.order() {
				if i == gwUpstreamTries {
					break
				}
				r, rtt, err := c.ExchangeContext(ctx, q, upstream)
				upstreams.report(upstream, rtt, err == nil)
				if err == nil {
					resp = r
					break
				}
				log.Debug("upstream DNS failed", zap.String("upstream", upstream), zap.Error(err))
			}
			if resp == nil {
				resp = new(mdns.Msg)
				resp.SetRcode(q, mdns.RcodeServerFailure)
			}
			resp.Id = q.Id
			if b, err := resp.Pack(); err == nil {
				_, _ = conn.WriteTo(b, from)
			}
		}()
	}
}
