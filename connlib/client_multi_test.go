package connlib

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	devportal "github.com/gozone/gozone/examples/portal"
)

// recordingOS is a ClientOS that remembers what it was told.
type recordingOS struct {
	mu     sync.Mutex
	iface  ClientInterface
	routes map[netip.Prefix]bool
}

func (o *recordingOS) SetInterface(_ context.Context, cfg ClientInterface) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.iface = cfg
	return nil
}

func (o *recordingOS) UpdateRoutes(_ context.Context, added, removed []netip.Prefix) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.routes == nil {
		o.routes = make(map[netip.Prefix]bool)
	}
	for _, p := range removed {
		delete(o.routes, p)
	}
	for _, p := range added {
		o.routes[p] = true
	}
	return nil
}

func (o *recordingOS) hasRoute(p string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.routes[netip.MustParsePrefix(p)]
}

const ctBranchToken = "gw-token-branch-012345"

// twoSiteConfig is a portal configuration with sites hq and branch, a
// resource on each (branchnet only when withBranchNet).
func twoSiteConfig(t *testing.T, withBranchNet bool) *devportal.Config {
	t.Helper()
	res, pol := "", ""
	if withBranchNet {
		res = "\n  - {name: branchnet, type: cidr, address: 10.97.0.0/24, sites: [branch]}"
		pol = "\n  - {group: eng, resource: branchnet}"
	}
	cfg, err := devportal.ParseConfig([]byte(`
account: {slug: acme}
sites:
  - {name: hq, gateway_tokens: ["` + ctGatewayToken + `"]}
  - {name: branch, gateway_tokens: ["` + ctBranchToken + `"]}
actors:
  - {name: alice, groups: [eng], tokens: ["` + ctClientToken + `"]}
resources:
  - {name: lab, type: cidr, address: 10.99.0.0/24, sites: [hq]}` + res + `
policies:
  - {group: eng, resource: lab}` + pol + `
relays:
  builtin: {enabled: true, public_ip: 127.0.0.1}
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestClientTwoSitesAndDelete: resources on two sites are served by two
// gateways at once; each packet leaves through the right one. Then the
// portal deletes one resource: its route goes and its packets are no longer
// forwarded, while the other keeps working.
func TestClientTwoSitesAndDelete(t *testing.T) {
	p, err := devportal.New(devportal.Options{Config: twoSiteConfig(t, true), RelayListen: "127.0.0.1:0", Logger: clientTestLogger(t, "portal")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	hq := startScriptedGatewayAs(t, p, ctGatewayToken, "gw-hq")
	branch := startScriptedGatewayAs(t, p, ctBranchToken, "gw-branch")
	osl := &recordingOS{}
	tc := startTestClient(t, p, ctClientToken, func(cfg *ClientConfig) { cfg.OS = osl })
	tc.waitReady(t)
	if !osl.hasRoute("10.99.0.0/24") || !osl.hasRoute("10.97.0.0/24") || !osl.hasRoute("100.96.0.0/11") {
		t.Fatalf("routes %v", osl.routes)
	}
	osl.mu.Lock()
	iface := osl.iface
	osl.mu.Unlock()
	if !iface.IPv4.IsValid() || !iface.IPv6.IsValid() {
		t.Fatalf("interface %+v", iface)
	}
	src := netip.AddrPortFrom(tc.c.Status().IPv4, 44000)
	toHQ := netip.MustParseAddrPort("10.99.0.1:7")
	toBranch := netip.MustParseAddrPort("10.97.0.1:7")
	memSend(t, tc.app, clientUDPPacket(nil, src, toHQ, []byte("hq")))
	memSend(t, tc.app, clientUDPPacket(nil, src, toBranch, []byte("branch")))
	if got := echoUDP(t, hq.lan, toHQ); string(got.Payload()[8:]) != "hq" {
		t.Fatalf("hq got %q", got.Payload()[8:])
	}
	if got := echoUDP(t, branch.lan, toBranch); string(got.Payload()[8:]) != "branch" {
		t.Fatalf("branch got %q", got.Payload()[8:])
	}
	memRecv(t, tc.app, clientWait, udpTo(src))
	memRecv(t, tc.app, clientWait, udpTo(src))
	st := tc.c.Status()
	if len(st.Gateways) != 2 || !st.Gateways[0].Connected || !st.Gateways[1].Connected || st.Gateways[0].SiteID == st.Gateways[1].SiteID {
		t.Fatalf("gateways %+v", st.Gateways)
	}
	// Neither gateway saw the other's traffic.
	if _, ok := memTryRecv(hq.lan, 300*time.Millisecond, udpTo(toBranch)); ok {
		t.Fatal("branch traffic left through hq")
	}

	// The portal deletes branchnet.
	if err := p.Apply(twoSiteConfig(t, false)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(clientWait)
	for osl.hasRoute("10.97.0.0/24") || len(tc.c.Status().Resources) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("resource not deleted: routes %v, resources %+v", osl.routes, tc.c.Status().Resources)
		}
		time.Sleep(20 * time.Millisecond)
	}
	memSend(t, tc.app, clientUDPPacket(nil, src, toBranch, []byte("gone")))
	if _, ok := memTryRecv(branch.lan, time.Second, udpTo(toBranch)); ok {
		t.Fatal("packet for a deleted resource was forwarded")
	}
	// hq keeps working.
	memSend(t, tc.app, clientUDPPacket(nil, src, toHQ, []byte("still")))
	if got := echoUDP(t, hq.lan, toHQ); string(got.Payload()[8:]) != "still" {
		t.Fatalf("hq got %q", got.Payload()[8:])
	}
}
