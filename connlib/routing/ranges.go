package routing

import "net/netip"

// Firezone's reserved address ranges (reference §1.4, "Special IPs").
// Every device's tunnel addresses come from the tunnel ranges; a client
// hands out DNS-resource proxy IPs from the resource ranges; DNS sentinels
// (the addresses the OS resolver is pointed at) sit inside the IPv4
// resource range and a /120 of the IPv6 one.
var (
	IPv4Tunnel       = netip.MustParsePrefix("100.64.0.0/11")
	IPv6Tunnel       = netip.MustParsePrefix("fd00:2021:1111::/107")
	IPv4Resources    = netip.MustParsePrefix("100.96.0.0/11")
	IPv6Resources    = netip.MustParsePrefix("fd00:2021:1111:8000::/107")
	IPv4DNSSentinels = netip.MustParsePrefix("100.100.111.0/24")
	IPv6DNSSentinels = netip.MustParsePrefix("fd00:2021:1111:8000:100:100:111:0/120")

	IPv4Default = netip.MustParsePrefix("0.0.0.0/0")
	IPv6Default = netip.MustParsePrefix("::/0")
)

// ReservedRanges returns the six ranges above, which a client always
// routes into its TUN device.
func ReservedRanges() []netip.Prefix {
	return []netip.Prefix{IPv4Tunnel, IPv6Tunnel, IPv4Resources, IPv6Resources, IPv4DNSSentinels, IPv6DNSSentinels}
}

// IsTunnelAddr reports whether a is a device tunnel address (a peer).
func IsTunnelAddr(a netip.Addr) bool {
	a = a.Unmap()
	return IPv4Tunnel.Contains(a) || IPv6Tunnel.Contains(a)
}

// IsProxyAddr reports whether a is in a DNS-resource proxy range (which
// includes the DNS sentinels).
func IsProxyAddr(a netip.Addr) bool {
	a = a.Unmap()
	return IPv4Resources.Contains(a) || IPv6Resources.Contains(a)
}
