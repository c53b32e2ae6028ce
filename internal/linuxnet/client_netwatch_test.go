package linuxnet

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

func TestNetworkWatcher(t *testing.T) {
	netns.RequireRoot(t)
	ns := netns.New(t, "cnw")
	peer := netns.New(t, "cnwp")
	for i, name := range []string{"eth9", "tun-fz"} {
		other := []string{"x0", "x1"}[i]
		if err := netns.Veth(ns, name, peer, other); err != nil {
			t.Fatal(err)
		}
		if err := ns.LinkUp(name); err != nil {
			t.Fatal(err)
		}
		if err := peer.LinkUp(other); err != nil {
			t.Fatal(err)
		}
	}
	var w *NetworkWatcher
	err := ns.Do(func() error {
		var err error
		w, err = WatchNetwork("tun-fz", 200*time.Millisecond)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	expect := func(want bool, what string) {
		t.Helper()
		select {
		case <-w.C:
			if !want {
				t.Fatalf("%s: unexpected change notification", what)
			}
		case <-time.After(2 * time.Second):
			if want {
				t.Fatalf("%s: no change notification", what)
			}
		}
	}
	// The tunnel's own addresses and routes are not a network change.
	if err := ns.AddAddr("tun-fz", netip.MustParsePrefix("100.64.0.1/32")); err != nil {
		t.Fatal(err)
	}
	if err := ns.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.Addr{}, "tun-fz"); err != nil {
		t.Fatal(err)
	}
	expect(false, "tunnel changes")
	// An address on another interface is; a burst gives one notification.
	for _, p := range []string{"192.0.2.10/24", "192.0.2.11/24", "192.0.2.12/24"} {
		if err := ns.AddAddr("eth9", netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	expect(true, "new address")
	expect(false, "after the burst")
	// A new default route on another interface is too.
	if err := ns.DelRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.Addr{}, "tun-fz"); err != nil {
		t.Fatal(err)
	}
	expect(false, "tunnel default route removed")
	if err := ns.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("192.0.2.1"), "eth9"); err != nil {
		t.Fatal(err)
	}
	expect(true, "default route")
	w.Close()
	w.Close()
}
