package acl

import (
	"net/netip"

	"github.com/gozone/gozone/connlib/prefixtable"
)

// forbiddenInternet lists the destinations the internet resource must not
// reach (reference §6.1: private, loopback, link-local, CGNAT, multicast,
// 240/4, ULA, v4-mapped (checked separately); plus "this network",
// unspecified and broadcast). 100.64.0.0/10 also covers Firezone's own tunnel and proxy
// ranges.
var forbiddenInternet = prefixtable.New([]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network", unspecified
	netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT (incl. Firezone tunnel/proxy ranges)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local
	netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
	netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, incl. 255.255.255.255
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("fc00::/7"),       // ULA (incl. Firezone's fd00:2021:1111::/48)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("ff00::/8"),       // multicast
})

// IsForbiddenInternet reports whether the internet resource must not
// carry traffic to a.
func IsForbiddenInternet(a netip.Addr) bool {
	// prefixtable unmaps v4-mapped addresses, so check them first: a
	// v4-mapped destination in an IPv6 packet is never legitimate.
	if a.Is4In6() {
		return true
	}
	return forbiddenInternet.Contains(a)
}
