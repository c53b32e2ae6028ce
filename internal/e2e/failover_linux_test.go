package e2e

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/topo"
)

// addGatewayHost adds a second gateway machine to the gateway site: a
// namespace on the gateway router's LAN (172.31.1.0/24, masqueraded like
// the first) with its own link to the resource host (10.20.1.0/24), over
// which it reaches the resource's 10.20.0.110 directly.
func addGatewayHost(t *testing.T, tp *topo.Topology) *netns.NS {
	t.Helper()
	ns := netns.New(t, "gw2")
	r, res := tp.GatewayRouter.NS, tp.Resource.NS
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netns.Veth(r, "lan1", ns, "eth0"))
	must(r.AddAddr("lan1", netip.MustParsePrefix("172.31.1.1/24")))
	must(r.LinkUp("lan1"))
	must(ns.AddAddr("eth0", netip.MustParsePrefix("172.31.1.100/24")))
	must(ns.LinkUp("eth0"))
	must(ns.LinkUp("lo"))
	must(ns.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("172.31.1.1"), ""))
	must(netns.Veth(ns, "res0", res, "res1"))
	must(ns.AddAddr("res0", netip.MustParsePrefix("10.20.1.1/24")))
	must(ns.LinkUp("res0"))
	must(res.AddAddr("res1", netip.MustParsePrefix("10.20.1.110/24")))
	must(res.LinkUp("res1"))
	must(ns.AddRoute(netip.PrefixFrom(tp.Resource.IPv4, 32), netip.Addr{}, "res0"))
	must(ns.EnableForwarding())
	return ns
}

// TestGatewayFailover: two gateways serve the resource's site. The one
// the client uses is killed (SIGKILL); within 20 s a new transfer goes
// through the other one.
func TestGatewayFailover(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e := newEnv(t, envOptions{})
	gw2 := addGatewayHost(t, e.tp)
	gws := map[string]*gateway{}
	for _, g := range []*gateway{e.startGateway(t, e.tp.Gateway.NS, "gw-a", "tun-gw"), e.startGateway(t, gw2, "gw-b", "tun-gw")} {
		gws[g.portalID] = g
	}
	c := e.startClient(t)
	if err := fetch(e.tp.Client, e.data, &transfer{size: 1 << 20, seed: 7}); err != nil {
		t.Fatal(err)
	}
	used := gatewayOf(t, status(t, c, `"connected":true`))
	if gws[used] == nil {
		t.Fatalf("client uses unknown gateway %q", used)
	}
	var other string
	for id := range gws {
		if id != used {
			other = id
		}
	}
	gws[used].Kill(t)
	killed := time.Now()
	x := &transfer{size: 1 << 20, seed: 8, total: 20 * time.Second, dial: 2 * time.Second}
	if err := fetch(e.tp.Client, e.data, x); err != nil {
		t.Fatalf("transfer after killing %s: %v", used, err)
	}
	t.Logf("failover from %s to %s: new transfer done %v after the kill", gws[used].Name, gws[other].Name, time.Since(killed).Round(time.Millisecond))
	if got := gatewayOf(t, status(t, c, `"connected":true`, `"gateway":"`+other+`"`)); got != other {
		t.Fatalf("client uses %q after failover, want %q", got, other)
	}
	gws[other].Running(t)
}

// gatewayOf returns the gateway id of a "status: gateway" log line.
func gatewayOf(t *testing.T, line string) string {
	t.Helper()
	var m struct {
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("status line %q: %v", line, err)
	}
	return m.Gateway
}
