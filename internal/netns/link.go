package netns

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// LinkUp sets the link called name up.
func (n *NS) LinkUp(name string) error {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %q in %s: %w", name, n.name, err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %q up in %s: %w", name, n.name, err)
	}
	return nil
}

// Veth creates a veth pair with end aName in a and end bName in b (a and b
// may be the same namespace) and sets both ends up. Deleting either
// namespace removes the pair, so the NS cleanup covers it.
func Veth(a *NS, aName string, b *NS, bName string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName, TxQLen: 1000},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(b.handle),
	}
	if err := a.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s/%s <-> %s/%s: %w", a.name, aName, b.name, bName, err)
	}
	if err := a.LinkUp(aName); err != nil {
		return err
	}
	return b.LinkUp(bName)
}

// AddAddr assigns the address p (e.g. 10.0.0.1/24) to the link. IPv6
// addresses are added with NODAD so they are usable at once.
func (n *NS) AddAddr(link string, p netip.Prefix) error {
	l, err := n.nl.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %q in %s: %w", link, n.name, err)
	}
	a := &netlink.Addr{IPNet: prefixToIPNet(p)}
	if p.Addr().Is6() {
		a.Flags = 0x02 // IFA_F_NODAD: tests must not wait ~2 s for DAD
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %q in %s: %w", p, link, n.name, err)
	}
	return nil
}

// AddRoute adds a route to dst. With a valid via it goes through that
// gateway, otherwise it is a link-scope route out of link. link may be empty
// when via is given.
func (n *NS) AddRoute(dst netip.Prefix, via netip.Addr, link string) error {
	r, err := n.route(dst, via, link)
	if err != nil {
		return err
	}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %v dev %q in %s: %w", dst, via, link, n.name, err)
	}
	return nil
}

// DelRoute removes a route added by AddRoute.
func (n *NS) DelRoute(dst netip.Prefix, via netip.Addr, link string) error {
	r, err := n.route(dst, via, link)
	if err != nil {
		return err
	}
	if err := n.nl.RouteDel(r); err != nil {
		return fmt.Errorf("delete route %s in %s: %w", dst, n.name, err)
	}
	return nil
}

func (n *NS) route(dst netip.Prefix, via netip.Addr, link string) (*netlink.Route, error) {
	r := &netlink.Route{Dst: prefixToIPNet(dst.Masked())}
	if link != "" {
		l, err := n.nl.LinkByName(link)
		if err != nil {
			return nil, fmt.Errorf("link %q in %s: %w", link, n.name, err)
		}
		r.LinkIndex = l.Attrs().Index
	}
	if via.IsValid() {
		r.Gw = net.IP(via.AsSlice())
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	return r, nil
}

// prefixToIPNet keeps the host bits (an address with its prefix length);
// callers that want a network pass p.Masked().
func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}
