package linuxnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// ErrNoLink is wrapped when the named interface does not exist.
var ErrNoLink = errors.New("linuxnet: no such interface")

func link(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoLink, name, err)
	}
	return l, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// SetAddrs makes want the interface's global addresses: missing ones are
// added (IPv6 without duplicate address detection, so they are usable at
// once), others removed. Link-local addresses are left alone. It is
// idempotent, which is what the portal's re-pushed init needs.
func SetAddrs(ifname string, want []netip.Prefix) error {
	l, err := link(ifname)
	if err != nil {
		return err
	}
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", ifname, err)
	}
	// Add first, remove after: the kernel flushes every IPv4 route of a
	// device when its last IPv4 address goes, so removing the old address
	// first would silently drop the routes the session installed.
	for _, p := range want {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = syscall.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("adding %s to %s: %w", p, ifname, err)
		}
	}
	for _, a := range have {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if wanted(want, p) {
			continue
		}
		if err := netlink.AddrDel(l, &a); err != nil {
			return fmt.Errorf("removing %s from %s: %w", p, ifname, err)
		}
	}
	return nil
}

func wanted(want []netip.Prefix, p netip.Prefix) bool {
	for _, w := range want {
		if w == p {
			return true
		}
	}
	return false
}

// Addrs lists the interface's global addresses.
func Addrs(ifname string) ([]netip.Prefix, error) {
	l, err := link(ifname)
	if err != nil {
		return nil, err
	}
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range have {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// AddRoute routes dst out of the interface (main table, link scope).
// An existing identical route is not an error.
func AddRoute(ifname string, dst netip.Prefix) error {
	l, err := link(ifname)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(dst.Masked()), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s dev %s: %w", dst, ifname, err)
	}
	return nil
}

// RemoveRoute removes a route added by AddRoute; a missing route is not an
// error.
func RemoveRoute(ifname string, dst netip.Prefix) error {
	l, err := link(ifname)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(dst.Masked()), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("removing route %s dev %s: %w", dst, ifname, err)
	}
	return nil
}
