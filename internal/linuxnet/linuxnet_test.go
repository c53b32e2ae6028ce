package linuxnet

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/gozone/gozone/internal/netns"
)

func TestAddrsRoutesMasquerade(t *testing.T) {
	netns.RequireRoot(t)
	ns := netns.New(t, "lnet")
	const dev = "tun-lnet"
	// A veth end stands in for the TUN (no dummy module everywhere).
	if err := netns.Veth(ns, dev, ns, "lnet-peer"); err != nil {
		t.Fatal(err)
	}
	a4 := netip.MustParsePrefix("100.64.0.9/32")
	a6 := netip.MustParsePrefix("fd00:2021:1111::9/128")
	b4 := netip.MustParsePrefix("100.64.0.10/32")
	err := ns.Do(func() error {
		if err := SetAddrs(dev, []netip.Prefix{a4, a6}); err != nil {
			return err
		}
		got, err := Addrs(dev)
		if err != nil {
			return err
		}
		if !slices.Contains(got, a4) || !slices.Contains(got, a6) {
			t.Errorf("addrs %v", got)
		}
		// Re-applying with a changed v4 replaces it (init re-push).
		if err := SetAddrs(dev, []netip.Prefix{b4, a6}); err != nil {
			return err
		}
		got, _ = Addrs(dev)
		if slices.Contains(got, a4) || !slices.Contains(got, b4) || !slices.Contains(got, a6) {
			t.Errorf("after replace: %v", got)
		}
		for _, r := range []netip.Prefix{TunnelV4, TunnelV6} {
			if err := AddRoute(dev, r); err != nil {
				return err
			}
			if err := AddRoute(dev, r); err != nil { // idempotent
				return err
			}
		}
		rs, err := netlink.RouteGet(netip.MustParseAddr("100.70.1.1").AsSlice())
		if err != nil || len(rs) == 0 {
			t.Errorf("route lookup: %v %v", rs, err)
		} else if l, _ := netlink.LinkByName(dev); rs[0].LinkIndex != l.Attrs().Index {
			t.Errorf("100.70.1.1 routed via %d", rs[0].LinkIndex)
		}
		if err := RemoveRoute(dev, TunnelV4); err != nil {
			return err
		}
		if err := RemoveRoute(dev, TunnelV4); err != nil { // missing is fine
			return err
		}

		m, err := InstallMasquerade(dev)
		if err != nil {
			return err
		}
		if ok, err := MasqueradeInstalled(dev); err != nil || !ok {
			t.Errorf("installed: %v %v", ok, err)
		}
		if v, _ := ReadSysctl("net.ipv4.ip_forward"); v != "1" {
			t.Errorf("ip_forward %q", v)
		}
		// A second install (restart after a crash) replaces the table.
		m2, err := InstallMasquerade(dev)
		if err != nil {
			return err
		}
		if err := m2.Remove(); err != nil {
			return err
		}
		if ok, _ := MasqueradeInstalled(dev); ok {
			t.Errorf("table still there after Remove")
		}
		return m.Remove() // already gone: the table name was removed above
	})
	if err != nil {
		t.Fatal(err)
	}
}
