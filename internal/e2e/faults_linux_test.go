package e2e

import (
	"testing"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/topo"
)

const tenMB = 10 << 20

// TestDirect: both sites behind endpoint-independent NATs, so hole
// punching works: the tunnel comes up, the client reports a direct path,
// and 10 MB arrive intact.
func TestDirect(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e, _, c := newEnvWithDevices(t, envOptions{})
	x := &transfer{size: tenMB, seed: 1}
	if err := fetch(e.tp.Client, e.data, x); err != nil {
		t.Fatal(err)
	}
	status(t, c, `"connected":true`, `"path":"direct"`)
}

// TestSymmetricClient: the client's router is a symmetric NAT, so no
// direct path exists; the connection goes through the relay and 10 MB
// arrive intact.
func TestSymmetricClient(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e, _, c := newEnvWithDevices(t, envOptions{topo: topo.Options{ClientNAT: topo.NATSymmetric}})
	if err := fetch(e.tp.Client, e.data, &transfer{size: tenMB, seed: 2}); err != nil {
		t.Fatal(err)
	}
	status(t, c, `"connected":true`, `"path":"relayed"`)
}

// TestLoss: 5 % of the packets on the client's link are dropped (both
// directions); TCP inside the tunnel still delivers 10 MB intact.
func TestLoss(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e, _, _ := newEnvWithDevices(t, envOptions{topo: topo.Options{DropPercent: map[topo.Link]int{topo.LinkClientLAN: 5}}})
	if err := fetch(e.tp.Client, e.data, &transfer{size: tenMB, seed: 3}); err != nil {
		t.Fatal(err)
	}
}
