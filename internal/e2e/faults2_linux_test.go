package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
)

// TestGarbage: for 10 s during a transfer, random datagrams hit the
// gateway's UDP port from its LAN at a high rate. The gateway does not
// crash, the transfer completes intact, and the counters the gateway logs
// on exit show the garbage it dropped.
func TestGarbage(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	const port = 51820
	e, g, _ := newEnvWithDevices(t, envOptions{}, "--listen-port", "51820")
	x := &transfer{size: tenMB, seed: 4, rate: 700 << 10}
	res := fetchAsync(e.tp.Client, e.data, x)

	conn, err := e.tp.GatewayRouter.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(e.tp.Gateway.IPv4, port)
	rng := rand.New(rand.NewPCG(4, 4))
	buf := make([]byte, 1500)
	sent := 0
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		for i := 0; i < 200; i++ {
			n := 1 + rng.IntN(len(buf))
			for j := range buf[:n] {
				buf[j] = byte(rng.Uint32())
			}
			// A share of the datagrams looks like something the gateway
			// knows at first glance: WireGuard message types, ChannelData,
			// STUN with the magic cookie.
			switch rng.IntN(4) {
			case 0:
				buf[0] = byte(1 + rng.IntN(4))
			case 1:
				buf[0] = 0x40 | buf[0]&0x3f
			case 2:
				if n >= 20 {
					buf[0] &= 0x3f
					buf[4], buf[5], buf[6], buf[7] = 0x21, 0x12, 0xa4, 0x42
				}
			}
			if _, err := conn.WriteToUDPAddrPort(buf[:n], dst); err == nil {
				sent++
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("sent %d garbage datagrams in %v", sent, time.Since(start).Round(time.Millisecond))
	g.Running(t)
	done(t, res, "transfer under garbage")
	g.Running(t)

	if err := g.Stop(); err != nil {
		t.Fatalf("gateway exit after SIGTERM: %v", err)
	}
	line := g.WaitLog(t, "gateway closing", "garbage_datagrams")
	var m struct {
		Garbage uint64 `json:"garbage_datagrams"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("closing line %q: %v", line, err)
	}
	if m.Garbage == 0 || m.Garbage > uint64(sent) {
		t.Fatalf("garbage_datagrams = %d after %d sent", m.Garbage, sent)
	}
	t.Logf("gateway counted %d garbage datagrams", m.Garbage)
}

// TestPortalDown: the portal dies (SIGKILL) during a transfer and comes
// back 30 s later on the same address. The transfer keeps flowing and
// completes while the portal is down (established tunnels need no
// portal); afterwards both devices join the restarted portal again.
//
// The transfer is paced to end within the outage on purpose: the
// development portal keeps tunnel addresses and authorizations in memory
// only, so after its restart the devices may get other tunnel addresses
// (assigned in join order) and the gateway an empty authorization list;
// a TCP flow spanning the restart can then not survive, whatever the
// devices do. A production portal keeps both.
func TestPortalDown(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e, g, c := newEnvWithDevices(t, envOptions{})
	x := &transfer{size: tenMB, seed: 5, rate: 512 << 10}
	res := fetchAsync(e.tp.Client, e.data, x)
	waitBytes(t, x, 512<<10)

	e.portal.Kill(t)
	killed := time.Now()
	before := x.got.Load()
	done(t, res, "transfer while the portal is down")
	t.Logf("%d bytes arrived in %v with the portal down (longest stall %v)", x.got.Load()-before,
		time.Since(killed).Round(time.Millisecond), x.maxGap.Round(time.Millisecond))
	time.Sleep(time.Until(killed.Add(30 * time.Second)))
	gm, cm := g.Mark(), c.Mark()
	e.startPortal(t)
	e.portal.WaitLog(t, "gateway joined", `"name": "gw-1"`)
	e.portal.WaitLog(t, "client joined")
	g.WaitLogSince(t, gm, "portal init applied")
	c.WaitLogSince(t, cm, "portal init applied")
	g.Running(t)
	c.Running(t)
}

// TestRoaming: during a transfer the client's underlay address changes
// (172.30.0.100 → .150) and the client gets SIGHUP; the transfer recovers
// over a new connection and arrives intact.
func TestRoaming(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e, _, c := newEnvWithDevices(t, envOptions{})
	x := &transfer{size: tenMB, seed: 6, rate: 500 << 10}
	res := fetchAsync(e.tp.Client, e.data, x)
	waitBytes(t, x, 512<<10)

	h := e.tp.Client
	nl := h.NS.Netlink()
	link, err := nl.LinkByName(h.Iface)
	if err != nil {
		t.Fatal(err)
	}
	old := &netlink.Addr{IPNet: &net.IPNet{IP: h.IPv4.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := nl.AddrDel(link, old); err != nil {
		t.Fatal(err)
	}
	if err := h.NS.AddAddr(h.Iface, netip.MustParsePrefix("172.30.0.150/24")); err != nil {
		t.Fatal(err)
	}
	gw := e.tp.ClientRouter.InnerIPv4
	if err := nl.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(),
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}); err != nil {
		t.Fatal(err)
	}
	m := c.Mark()
	c.Signal(t, syscall.SIGHUP)
	c.WaitLogSince(t, m, "resetting the tunnel")
	done(t, res, "transfer across roaming")
	t.Logf("longest stall of the transfer across roaming: %v", x.maxGap.Round(time.Millisecond))
	l := status(t, c, `"connected":true`)
	if !strings.Contains(l, `"path":"direct"`) && !strings.Contains(l, `"path":"relayed"`) {
		t.Fatalf("status after roaming: %s", l)
	}
}

// waitBytes waits until the transfer has received at least n bytes.
func waitBytes(t *testing.T, x *transfer, n uint64) {
	t.Helper()
	testproc.Eventually(t, testproc.Timeout, func() error {
		if got := x.got.Load(); got < n {
			return fmt.Errorf("transfer stuck at %d bytes", got)
		}
		return nil
	})
}
