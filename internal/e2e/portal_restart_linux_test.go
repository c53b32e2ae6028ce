package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

// TestPortalRestartNewTransfer: after the development portal is killed
// and restarted, both devices re-join and a new transfer must go through.
// When the client re-joins before the gateway, the restarted portal gives
// it another tunnel address (join order); the gateway re-joins with no
// authorizations and closes the connection. Regression test: linuxnet's
// SetAddrs used to remove the old address first, the kernel then flushed
// the TUN's IPv4 routes, and the client's dials timed out for good.
func TestPortalRestartNewTransfer(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e, g, c := newEnvWithDevices(t, envOptions{})
	if err := fetch(e.tp.Client, e.data, &transfer{size: 1 << 20, seed: 50}); err != nil {
		t.Fatal(err)
	}
	e.portal.Kill(t)
	time.Sleep(30 * time.Second)
	gm, cm := g.Mark(), c.Mark()
	e.startPortal(t)
	g.WaitLogSince(t, gm, "portal init applied")
	c.WaitLogSince(t, cm, "portal init applied")
	if err := fetch(e.tp.Client, e.data, &transfer{size: 1 << 20, seed: 55, total: time.Minute}); err != nil {
		addr, _ := e.tp.Client.Run(context.Background(), "ip", "-br", "addr", "show", "tun-fz")
		croutes, _ := e.tp.Client.Run(context.Background(), "ip", "route", "show", "dev", "tun-fz")
		groutes, _ := e.tp.Gateway.Run(context.Background(), "ip", "route", "show", "dev", "tun-gw")
		t.Fatalf("transfer after the portal came back: %v\nclient TUN: %s\nclient routes via tun-fz:\n%s\ngateway routes via tun-gw:\n%s", err, addr, croutes, groutes)
	}
}
