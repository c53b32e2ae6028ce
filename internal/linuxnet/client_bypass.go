package linuxnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Bypass keeps chosen addresses on the physical network while the client
// routes everything else into its tunnel (the internet resource): the
// portal, the relays and the gateways' ICE candidates must not be reached
// through the tunnel they carry. It remembers the default routes that
// existed when it was created and installs a host route through them for
// every bypassed address. Calls come from one goroutine.
type Bypass struct {
	v4, v6    *netlink.Route // the physical default routes (nil: none)
	installed map[netip.Addr]*netlink.Route
}

// NewBypass records the current default routes of the main table.
func NewBypass() (*Bypass, error) {
	b := &Bypass{installed: make(map[netip.Addr]*netlink.Route)}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("listing routes: %w", err)
		}
		for i := range routes {
			r := routes[i]
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if fam == netlink.FAMILY_V4 && b.v4 == nil {
				b.v4 = &r
			}
			if fam == netlink.FAMILY_V6 && b.v6 == nil {
				b.v6 = &r
			}
		}
	}
	return b, nil
}

// Set makes addrs exactly the bypassed addresses. Addresses of a family
// without a physical default route are skipped.
func (b *Bypass) Set(addrs []netip.Addr) error {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	var errs []error
	for a, r := range b.installed {
		if !want[a] {
			if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
			delete(b.installed, a)
		}
	}
	for a := range want {
		if _, ok := b.installed[a]; ok {
			continue
		}
		def := b.v6
		if a.Is4() {
			def = b.v4
		}
		if def == nil {
			continue
		}
		r := &netlink.Route{
			LinkIndex: def.LinkIndex,
			Gw:        def.Gw,
			Dst:       &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())},
			Table:     unix.RT_TABLE_MAIN,
		}
		if def.Gw == nil {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("bypass route to %s: %w", a, err))
			continue
		}
		b.installed[a] = r
	}
	return errors.Join(errs...)
}

// Close removes every bypass route.
func (b *Bypass) Close() error { return b.Set(nil) }
