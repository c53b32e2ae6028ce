package connlib

import (
	"context"
	"net"
	"net/netip"
	"strings"
)

// HostsResolver is a GatewayResolver with fixed answers for some names (a
// hosts file for the gateway's DNS resources, without touching /etc/hosts)
// and a fallback for the rest. Demos and tests use it to point a DNS
// resource at a server on the gateway's host.
type HostsResolver struct {
	// Hosts maps a name (case-insensitive, with or without the final dot)
	// to its addresses.
	Hosts map[string][]netip.Addr
	// Fallback resolves every other name; nil: net.DefaultResolver. A
	// HostsResolver with NoFallback answers only its own names.
	Fallback   GatewayResolver
	NoFallback bool
}

var _ GatewayResolver = (*HostsResolver)(nil)

// LookupNetIP implements GatewayResolver; network is "ip", "ip4" or "ip6".
func (r *HostsResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	for h, addrs := range r.Hosts {
		if strings.ToLower(strings.TrimSuffix(h, ".")) != name {
			continue
		}
		var out []netip.Addr
		for _, a := range addrs {
			if network == "ip" || (network == "ip4") == a.Is4() {
				out = append(out, a)
			}
		}
		if len(out) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return out, nil
	}
	if r.NoFallback {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if r.Fallback != nil {
		return r.Fallback.LookupNetIP(ctx, network, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}
