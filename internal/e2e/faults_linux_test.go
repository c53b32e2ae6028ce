package e2e

import (
	"testing"

	"github.com/gozone/gozone/internal/netns"
)

const tenMB = 10 << 20

// TestDirect: both sites behind endpoint-independent NATs, so hole
// punching works: the tunnel comes up, the client reports a direct path,
// and 10 MB arrive intact.
func TestDirect(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.startGateway(t, e.tp.Gateway, "gw-1", "tun-gw")
	c := e.startClient(t)
	x := &transfer{size: tenMB, seed: 1}
	if err := fetch(e.tp.Client, e.data, x); err != nil {
		t.Fatal(err)
	}
	status(t, c, `"connected":true`, `"path":"direct"`)
}
