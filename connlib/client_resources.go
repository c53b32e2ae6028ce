package connlib

import (
	"net/netip"
	"slices"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/routing"
)

// upsertResource adds or replaces a resource in the routing table and the
// stub resolver. A resource whose type, address or sites changed loses its
// authorization (the portal may pick another gateway for it).
func (s *clientState) upsertResource(r portal.ClientResource) {
	rid, ok := clientParseID(r.ID)
	if !ok {
		s.log.Warn("ignoring resource without id")
		return
	}
	if old, had := s.resources[r.ID]; had {
		if old.Type != r.Type || old.Address != r.Address || !slices.Equal(old.Sites, r.Sites) || old.IPStack != r.IPStack {
			s.revoke(r.ID)
			s.removeFromTables(old, rid)
		}
	}
	switch r.Type {
	case portal.ResourceCIDR:
		p, err := clientParsePrefix(r.Address)
		if err != nil {
			s.log.Warn("ignoring CIDR resource with a bad address", zap.String("resource", r.ID), zap.String("address", r.Address))
			return
		}
		s.c.table.Update(func(e *routing.Editor) { e.SetCIDR(rid, p) })
	case portal.ResourceDNS:
		stack, known := dns.ParseIPStack(r.IPStack)
		if !known {
			s.log.Debug("unknown ip_stack, using dual", zap.String("resource", r.ID), zap.String("ip_stack", r.IPStack))
		}
		if err := s.c.resolver.UpsertResource(dns.Resource{ID: r.ID, Address: r.Address, IPStack: stack}); err != nil {
			s.log.Warn("ignoring DNS resource with a bad address", zap.String("resource", r.ID), zap.String("address", r.Address), zap.Error(err))
			return
		}
	case portal.ResourceInternet:
		enabled := s.c.cfg.ActivateInternetResource
		s.c.table.Update(func(e *routing.Editor) { e.SetInternet(rid, enabled) })
	default:
		s.log.Debug("ignoring unsupported resource type", zap.String("resource", r.ID), zap.String("type", r.Type))
		return
	}
	s.resources[r.ID] = r
	s.ridToID[rid] = r.ID
}

// removeResource forgets a resource and its authorization.
func (s *clientState) removeResource(id string) {
	r, ok := s.resources[id]
	if !ok {
		return
	}
	rid, _ := clientParseID(id)
	s.revoke(id)
	s.removeFromTables(r, rid)
	delete(s.resources, id)
	delete(s.ridToID, rid)
	delete(s.failures, id)
	s.c.pending.Release(s.c.pending.TakeResource(rid, nil))
	s.log.Info("resource removed", zap.String("resource", id), zap.String("name", r.Name))
}

func (s *clientState) removeFromTables(r portal.ClientResource, rid routing.ResourceID) {
	switch r.Type {
	case portal.ResourceDNS:
		s.c.resolver.RemoveResource(r.ID)
	default:
		s.c.table.Update(func(e *routing.Editor) { e.RemoveResource(rid) })
	}
}

// afterResourceChange applies what follows any resource change: proxy IPs
// that moved, routes, allowed IPs of connected gateways, the view.
func (s *clientState) afterResourceChange() {
	s.pollAssignments()
	s.applyRoutes()
	s.publish()
}

// revoke drops the authorization of resource id: it is no longer routed to
// its gateway (the connection stays; other resources may use it).
func (s *clientState) revoke(id string) {
	gid, ok := s.resGateway[id]
	if !ok {
		return
	}
	rid, _ := clientParseID(id)
	delete(s.resGateway, id)
	delete(s.ready, rid)
	for t := range s.active {
		if t.rid == rid {
			delete(s.active, t)
		}
	}
	s.retrier.CancelIf(func(k clientAssignKey) bool { return k.resource == id })
	if gw := s.gateways[gid]; gw != nil {
		delete(gw.resources, id)
		s.setAllowedIPs(gw)
	}
	s.publish()
}

// allowedIPs is what WireGuard routes to gw: its tunnel addresses (for
// control packets and its DNS server), the prefixes of its CIDR resources,
// the proxy IPs of its DNS resources' names and, for the internet resource,
// everything (sessions design, item 4).
func (s *clientState) allowedIPs(gw *clientGateway) []netip.Prefix {
	var out []netip.Prefix
	if gw.ipv4.IsValid() {
		out = append(out, netip.PrefixFrom(gw.ipv4, 32))
	}
	if gw.ipv6.IsValid() {
		out = append(out, netip.PrefixFrom(gw.ipv6, 128))
	}
	for _, id := range clientSortedKeys(gw.resources) {
		r, ok := s.resources[id]
		if !ok {
			continue
		}
		switch r.Type {
		case portal.ResourceCIDR:
			if p, err := clientParsePrefix(r.Address); err == nil {
				out = append(out, p)
			}
		case portal.ResourceDNS:
			for _, a := range s.c.resolver.Assignments(id) {
				for _, ip := range a.AppendIPs(nil) {
					out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
				}
			}
		case portal.ResourceInternet:
			out = append(out, routing.IPv4Default, routing.IPv6Default)
		}
	}
	return out
}

// setAllowedIPs pushes gw's allowed IPs to its connection.
func (s *clientState) setAllowedIPs(gw *clientGateway) {
	gw.params.AllowedIPs = s.allowedIPs(gw)
	if err := s.c.node.SetAllowedIPs(gw.id, gw.params.AllowedIPs); err != nil {
		s.log.Debug("updating allowed IPs", zap.String("gateway", gw.id), zap.Error(err))
	}
}

// clientParsePrefix parses a CIDR resource address; a bare IP is a host
// prefix.
func clientParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// resourceName is a log-friendly name of a resource.
func (s *clientState) resourceName(id string) string {
	if r, ok := s.resources[id]; ok {
		if r.Name != "" {
			return r.Name
		}
		return r.Address
	}
	return ""
}
