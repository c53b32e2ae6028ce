package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
	"github.com/gozone/gozone/internal/topo"
)

const (
	gatewayToken = "gw-token-faults-0123456789"
	clientToken  = "client-token-faults-0123456"
	portalPort   = 8080
	// relaySecret is fixed so that a restarted relay still accepts the
	// credentials minted before the restart.
	relaySecret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	// dataPort is the resource host's transfer server.
	dataPort = 9000
)

// env is a topology with the portal (and its built-in relay) running, a
// transfer server on the resource host, and the devices the test started.
type env struct {
	tp        *topo.Topology
	apiURL    string
	portalAP  netip.AddrPort
	cfg       string // the portal's configuration (YAML)
	portal    *testproc.Proc
	data      netip.AddrPort
	portalRun int
	// gatewayBin and clientBin are the binaries under test
	// (testproc.Build).
	gatewayBin, clientBin string
}

// envOptions are the knobs of newEnv beyond the topology's.
type envOptions struct {
	topo topo.Options
	// relays replaces the portal's relays section (YAML, indented by
	// two spaces); empty means the built-in relay on the portal host.
	relays string
}

// newEnv builds the topology, starts the portal and the transfer server.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	return newEnvOn(t, topo.Build(t, o.topo), o)
}

// newEnvWithDevices is newEnv with the devices most tests use: gateway
// "gw-1" (TUN tun-gw, extra flags gwArgs) on the gateway host, then a
// client whose tunnel is up.
func newEnvWithDevices(t *testing.T, o envOptions, gwArgs ...string) (e *env, gw *gateway, client *testproc.Proc) {
	t.Helper()
	e = newEnv(t, o)
	gw = e.startGateway(t, e.tp.Gateway.NS, "gw-1", "tun-gw", gwArgs...)
	return e, gw, e.startClient(t)
}

// newEnvOn is newEnv on a topology the test built itself (o.topo is
// ignored).
func newEnvOn(t *testing.T, tp *topo.Topology, o envOptions) *env {
	t.Helper()
	e := &env{tp: tp, gatewayBin: testproc.Build(t, testproc.GatewayPkg), clientBin: testproc.Build(t, testproc.ClientPkg)}
	e.portalAP = netip.AddrPortFrom(tp.Portal.IPv4, portalPort)
	e.apiURL = "ws://" + e.portalAP.String()
	relays := o.relays
	if relays == "" {
		relays = "  builtin: {enabled: true, public_ip: " + tp.Portal.IPv4.String() + ", secret: \"" + relaySecret + "\"}\n"
	}
	e.cfg = `
account: {slug: faults}
sites:
  - {name: hq, gateway_tokens: ["` + gatewayToken + `"]}
actors:
  - {name: alice, groups: [eng], tokens: ["` + clientToken + `"]}
resources:
  - {name: resnet, type: cidr, address: ` + topo.ResourceV4.String() + `, sites: [hq]}
policies:
  - {group: eng, resource: resnet}
relays:
` + relays
	e.startPortal(t)
	e.data = netip.AddrPortFrom(tp.Resource.IPv4, dataPort)
	serveData(t, tp.Resource, e.data)
	return e
}

// startPortal starts the portal binary (again, after a kill) on the same
// address, and waits until it accepts connections.
func (e *env) startPortal(t *testing.T) {
	t.Helper()
	e.portalRun++
	e.portal = testproc.StartPortal(t, testproc.Portal{
		Name: "portal#" + strconv.Itoa(e.portalRun), Config: e.cfg,
		Listen: e.portalAP, RelayListen: netip.AddrPortFrom(e.tp.Portal.IPv4, 3478),
		In: e.tp.Portal.NS, From: e.tp.Client,
	})
}

// startGateway runs a gateway binary with the given id and TUN name in ns
// and waits until the portal saw it join.
func (e *env) startGateway(t *testing.T, ns *netns.NS, id, tun string, args ...string) *gateway {
	t.Helper()
	m := e.portal.Mark()
	base := []string{"--tun-name", tun, "--masquerade", "--no-inc-buf", "--health-check-addr", "", "--tun-threads", "1", "--log-format", "json"}
	cmd := exec.Command(e.gatewayBin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "FIREZONE_API_URL="+e.apiURL, "FIREZONE_TOKEN="+gatewayToken,
		"FIREZONE_ID="+id, "FIREZONE_NAME="+id)
	g := &gateway{Proc: testproc.Start(t, ns, id, cmd)}
	line := e.portal.WaitLogSince(t, m, "gateway joined", `"name": "`+id+`"`)
	var f struct {
		ID string `json:"gateway_id"`
	}
	if i := strings.Index(line, "{"); i < 0 || json.Unmarshal([]byte(line[i:]), &f) != nil || f.ID == "" {
		t.Fatalf("portal log line without a gateway id: %s", line)
	}
	g.portalID = f.ID
	return g
}

// startClient runs the client binary in the client namespace and waits
// until its tunnel is up.
func (e *env) startClient(t *testing.T, args ...string) *testproc.Proc {
	t.Helper()
	base := []string{"--log-format", "json", "--tun-name", "tun-fz", "--dns-control", "disabled"}
	cmd := exec.Command(e.clientBin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "FIREZONE_API_URL="+e.apiURL, "FIREZONE_TOKEN="+clientToken,
		"FIREZONE_ID=faults-client", "FIREZONE_NAME=faults-client")
	c := testproc.Start(t, e.tp.Client.NS, "client", cmd)
	c.WaitLog(t, "tunnel is up")
	return c
}

// status asks the client for its status (SIGUSR1, once a second) until a
// "status: gateway" line has all of parts, and returns that line.
func status(t *testing.T, c *testproc.Proc, parts ...string) string {
	t.Helper()
	parts = append([]string{"status: gateway"}, parts...)
	m := c.Mark()
	var line string
	err := testproc.Poll(testproc.Timeout, time.Second, func() error {
		var ok bool
		if line, ok = c.Log.Find(m, parts...); ok {
			return nil
		}
		c.Signal(t, syscall.SIGUSR1)
		last, _ := c.Log.Find(m, "status: gateway")
		return fmt.Errorf("no client status with %q; last: %s", parts, last)
	})
	if err != nil {
		t.Fatal(err)
	}
	return line
}
