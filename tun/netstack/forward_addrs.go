package netstack

import (
	"fmt"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/gozone/gozone/tun"
)

// NewDeferred is New for a device whose addresses are not known yet: a
// session learns them from the portal (the client's interface
// configuration, the gateway's init) and applies them with SetAddrs and
// SetDNS. Until then dialing fails with ErrNoFamily.
func NewDeferred(cfg Config) (*Device, error) {
	return newDevice(cfg, nil)
}

// SetAddrs replaces the stack's own addresses: addresses not in addrs are
// removed (their sockets stop receiving), new ones added. Each family with
// an address gets a default route into the device (a forwarding device
// always routes both). Safe for concurrent use with dialing and the packet
// path; calls to SetAddrs and SetDNS must not run concurrently with each
// other.
func (d *Device) SetAddrs(addrs []netip.Addr) error {
	if d.isClosed.Load() {
		return tun.ErrClosed
	}
	old := d.conf.Load()
	next := &devConf{dns: old.dns}
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || slices.Contains(next.addrs, a) {
			continue
		}
		next.addrs = append(next.addrs, a)
		if a.Is4() && !next.v4.IsValid() {
			next.v4 = a
		}
		if a.Is6() && !next.v6.IsValid() {
			next.v6 = a
		}
	}
	for _, a := range old.addrs {
		if !slices.Contains(next.addrs, a) {
			if err := d.stack.RemoveAddress(nicID, tcpip.AddrFromSlice(a.AsSlice())); err != nil {
				return fmt.Errorf("netstack: remove address %v: %s", a, err)
			}
		}
	}
	for _, a := range next.addrs {
		if slices.Contains(old.addrs, a) {
			continue
		}
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if err := d.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("netstack: add address %v: %s", a, err)
		}
	}
	var routes []tcpip.Route
	if next.v4.IsValid() || d.fwd != nil {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	}
	if next.v6.IsValid() || d.fwd != nil {
		routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	d.stack.SetRouteTable(routes)
	d.conf.Store(next)
	return nil
}

// SetDNS replaces the resolvers LookupHost and DialContext use for names.
func (d *Device) SetDNS(servers []netip.Addr) {
	old := d.conf.Load()
	next := *old
	next.dns = nil
	for _, s := range servers {
		next.dns = append(next.dns, s.Unmap())
	}
	d.conf.Store(&next)
}

// Addrs returns the stack's own addresses.
func (d *Device) Addrs() []netip.Addr {
	return slices.Clone(d.conf.Load().addrs)
}

// isLocal reports whether a is one of the stack's own addresses.
func (d *Device) isLocal(a netip.Addr) bool {
	return slices.Contains(d.conf.Load().addrs, a)
}
