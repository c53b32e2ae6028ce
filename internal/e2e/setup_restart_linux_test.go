package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
	"github.com/gozone/gozone/internal/topo"
)

// setupEchoPort is the UDP reflector on the resource host the set-up probes
// go to.
const setupEchoPort = 7

// setupProbe sends a UDP datagram to echo from the client host once a
// second (as examples/bench does) and returns the time from the first one
// to the first reply.
func setupProbe(h *topo.Host, echo netip.AddrPort, limit time.Duration) (time.Duration, error) {
	c, err := h.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 128)
	start := time.Now()
	for time.Since(start) < limit {
		if _, err := c.WriteToUDPAddrPort([]byte("setup"), echo); err != nil {
			return 0, err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("no reply from %v within %v", echo, limit)
}

// TestSetupQuickRestarts restarts the client (same id, fresh key, new
// port) again and again against one gateway, both behind
// endpoint-independent NATs, and requires every fresh connection to carry
// a reply within 20 s (examples/bench once saw a gateway log "authorization
// created" and never "connection established"). It logs the median set-up
// time, first packet to first reply. GOZONE_SETUP_ROUNDS sets the number of
// restarts (default 8).
func TestSetupQuickRestarts(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	rounds := 8
	if n, err := strconv.Atoi(os.Getenv("GOZONE_SETUP_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	e := newEnv(t, envOptions{})
	echo := netip.AddrPortFrom(e.tp.Resource.IPv4, setupEchoPort)
	if err := e.tp.Resource.UDPSourceEcho(echo); err != nil {
		t.Fatal(err)
	}
	gw := e.startGateway(t, e.tp.Gateway.NS, "gw-1", "tun-gw")
	var times []time.Duration
	for i := 0; i < rounds; i++ {
		m := gw.Mark()
		c := e.startClient(t)
		dt, err := setupProbe(e.tp.Client, echo, 20*time.Second)
		if err != nil {
			if d := os.Getenv("GOZONE_SETUP_DUMP"); d != "" {
				_ = os.WriteFile(d+".gateway.log", []byte(gw.Log.String()[m:]), 0o644)
				_ = os.WriteFile(d+".client.log", []byte(c.Log.String()), 0o644)
			}
			t.Fatalf("round %d: %v (earlier set-up times %v)\ngateway log since the restart:\n%s", i, err, times, testproc.Tail(gw.Log.String()[m:], 80))
		}
		times = append(times, dt)
		if err := c.Stop(); err != nil {
			t.Fatalf("round %d: client exit: %v", i, err)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("set-up over %d quick client restarts: median %v, min %v, max %v",
		rounds, times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
}
