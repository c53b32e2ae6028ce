package linuxnet

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/gozone/gozone/internal/netns"
)

// TestSetAddrsKeepsRoutes: when the portal hands a device a new tunnel
// address, the routes through the device must survive. The kernel flushes
// a device's IPv4 routes when its last IPv4 address goes, so the new
// address has to be added before the old one is removed (found by the e2e
// portal-restart test: the client lost its resource routes for good).
func TestSetAddrsKeepsRoutes(t *testing.T) {
	netns.RequireRoot(t)
	ns := netns.New(t, "lnra")
	const dev = "tun-lnra"
	if err := netns.Veth(ns, dev, ns, "lnra-peer"); err != nil {
		t.Fatal(err)
	}
	res4 := netip.MustParsePrefix("10.20.0.0/24")
	res6 := netip.MustParsePrefix("fd20:20::/64")
	err := ns.Do(func() error {
		if err := SetAddrs(dev, []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32"), netip.MustParsePrefix("fd00:2021:1111::2/128")}); err != nil {
			return err
		}
		for _, r := range []netip.Prefix{res4, res6} {
			if err := AddRoute(dev, r); err != nil {
				return err
			}
		}
		// The portal restarted and gave other addresses (both families).
		if err := SetAddrs(dev, []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd00:2021:1111::1/128")}); err != nil {
			return err
		}
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		for _, probe := range []netip.Addr{netip.MustParseAddr("10.20.0.7"), netip.MustParseAddr("fd20:20::7")} {
			rs, err := netlink.RouteGet(probe.AsSlice())
			if err != nil || len(rs) == 0 || rs[0].LinkIndex != l.Attrs().Index {
				t.Errorf("after re-addressing, %v is not routed via %s (%v, %v)", probe, dev, rs, err)
			}
		}
		got, err := Addrs(dev)
		if err != nil {
			return err
		}
		if len(got) != 2 {
			t.Errorf("addresses after re-addressing: %v, want only the two new ones", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
