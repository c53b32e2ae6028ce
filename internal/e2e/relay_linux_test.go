package e2e

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/gozone/gozone/examples/portal/relay"
	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
	"github.com/gozone/gozone/internal/topo"
)

// relayHost runs a TURN relay on the topology's relay host: a second
// portal process whose built-in relay is all that is used (nobody joins
// its channels). It is restartable on the same address with the same
// secret, so credentials minted before a restart stay valid.
type relayHost struct {
	tp   *topo.Topology
	cfg  string // the relay's portal configuration (YAML)
	addr netip.AddrPort
	p    *testproc.Proc
	runs int
}

// externalRelay starts the relay and returns the relays section for the
// main portal's configuration: that relay as an external TURN server with
// long-lived credentials derived from the shared secret.
func externalRelay(t *testing.T, tp *topo.Topology) (*relayHost, string) {
	t.Helper()
	r := &relayHost{tp: tp, addr: netip.AddrPortFrom(tp.Relay.IPv4, 3478)}
	r.cfg = `
account: {slug: relayonly}
sites:
  - {name: none, gateway_tokens: ["gw-token-relay-only-0123456"]}
relays:
  builtin: {enabled: true, public_ip: ` + tp.Relay.IPv4.String() + `, secret: "` + relaySecret + `"}
`
	r.start(t)
	user, pass := relay.Credentials(relaySecret, "gozone-e2e-relay-user", relay.GatewayCredentialExpiry)
	section := "  builtin: {enabled: false}\n" +
		"  external:\n" +
		"    - {name: relay-1, addr: \"" + r.addr.String() + "\", username: \"" + user + "\", password: \"" + pass + "\"}\n"
	return r, section
}

func (r *relayHost) start(t *testing.T) {
	t.Helper()
	r.runs++
	r.p = testproc.StartPortal(t, testproc.Portal{
		Name: "relay#" + strconv.Itoa(r.runs), Config: r.cfg,
		Listen: netip.AddrPortFrom(r.tp.Relay.IPv4, portalPort), RelayListen: r.addr,
		In: r.tp.Relay.NS,
	})
	r.p.WaitLog(t, "relay listening")
}

// TestRelayRestart: both sites behind symmetric NATs, so the connection
// is relayed. The relay dies (SIGKILL) during a transfer, losing every
// allocation, and is back 2 s later; the transfer completes intact over
// the relay (through a new allocation) and the client is connected again.
func TestRelayRestart(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	r, c, x, res := relayedTransfer(t, 9)
	r.p.Kill(t)
	killed := time.Now()
	time.Sleep(2 * time.Second)
	r.start(t)
	done(t, res, "transfer across the relay restart")
	t.Logf("transfer done %v after the relay was killed; longest stall %v", time.Since(killed).Round(time.Millisecond), x.maxGap.Round(time.Millisecond))
	status(t, c, `"connected":true`, `"path":"relayed"`)
}

// relayedTransfer sets up the relay tests: both sites behind symmetric
// NATs, so only the external relay (restartable) works; gateway and client
// started; a first 1 MiB transfer (seed) over the relay checked; then a
// 10 MB transfer paced to 300 KiB/s (seed+1) started and 1 MiB into it.
func relayedTransfer(t *testing.T, seed uint64) (r *relayHost, c *testproc.Proc, x *transfer, res <-chan error) {
	t.Helper()
	tp := topo.Build(t, topo.Options{ClientNAT: topo.NATSymmetric, GatewayNAT: topo.NATSymmetric})
	r, relays := externalRelay(t, tp)
	e := newEnvOn(t, tp, envOptions{relays: relays})
	e.startGateway(t, e.tp.Gateway.NS, "gw-1", "tun-gw")
	c = e.startClient(t)
	if err := fetch(e.tp.Client, e.data, &transfer{size: 1 << 20, seed: seed}); err != nil {
		t.Fatal(err)
	}
	status(t, c, `"connected":true`, `"path":"relayed"`)
	x = &transfer{size: tenMB, seed: seed + 1, rate: 300 << 10}
	res = fetchAsync(e.tp.Client, e.data, x)
	waitBytes(t, x, 1<<20)
	return r, c, x, res
}
