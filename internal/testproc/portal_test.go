package testproc

import (
	"net"
	"net/netip"
	"testing"
)

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T, network string) uint16 {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return netip.MustParseAddrPort(c.LocalAddr().String()).Port()
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

// TestStartPortal runs the real development portal on loopback: it is
// reachable when StartPortal returns, and stops cleanly.
func TestStartPortal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the portal binary (-short)")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	c := Portal{
		Config: `
account: {slug: testproc}
sites: [{name: hq, gateway_tokens: ["gw-token-testproc-0123456"]}]
relays: {builtin: {enabled: true}}
`,
		Listen:      netip.AddrPortFrom(lo, freePort(t, "tcp")),
		RelayListen: netip.AddrPortFrom(lo, freePort(t, "udp")),
		From:        Local{},
	}
	p := StartPortal(t, c)
	if c.URL() != "ws://"+c.Listen.String() {
		t.Fatalf("URL %q", c.URL())
	}
	conn, err := Local{}.DialTCP(c.Listen, Timeout)
	if err != nil {
		t.Fatalf("portal not reachable after StartPortal: %v", err)
	}
	conn.Close()
	p.Running(t)
	if err := p.Stop(); err != nil {
		t.Fatalf("portal exit after SIGTERM: %v\n%s", err, p.Log)
	}
}
