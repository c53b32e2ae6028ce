package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gozone/gozone/internal/topo"
)

// gozone's own paths: the development portal (with its built-in TURN relay)
// in the portal's namespace, the gateway binary in the gateway's, the
// headless client in the client's, one deployment per path:
//
//   - gozone-direct-q1 / -q2: both sites behind endpoint-independent NATs
//     (hole punching works), gateway with 1 or 2 TUN queues;
//   - gozone-relayed: client behind a symmetric NAT, gateway behind an
//     endpoint-independent one, so only the relay works.
//
// Every run checks the path it claims: the bytes the portal/relay host
// received during the run must be at least half the payload for the
// relayed path and under half for a direct one.
//
// The binaries are configured the way Firezone's are (environment
// variables, gozoneEnv); if gozone's flags differ, that is the one place to
// change. Until gateway/ and client/ exist the paths are reported as not
// available, never with made-up figures.
var gozonePathNames = []struct {
	name, desc string
	client     topo.NAT
	gateway    topo.NAT
	tunThreads int
	relayed    bool
}{
	{"gozone-direct-q1", "gozone client → gateway (1 TUN queue) → resource, direct (both behind EI NAT)", topo.NATEndpointIndependent, topo.NATEndpointIndependent, 1, false},
	{"gozone-direct-q2", "gozone client → gateway (2 TUN queues) → resource, direct (both behind EI NAT)", topo.NATEndpointIndependent, topo.NATEndpointIndependent, 2, false},
	{"gozone-relayed", "gozone client (symmetric NAT) → relay → gateway (EI NAT, 2 TUN queues) → resource", topo.NATSymmetric, topo.NATEndpointIndependent, 2, true},
}

const (
	portalHTTPPort = 8080
	portalTURNPort = 3478
	echoPort       = 7
)

// gozoneMissing says why the gozone paths cannot run ("" when the
// binaries' sources are there).
func gozoneMissing(repo string) string {
	_, errG := os.Stat(filepath.Join(repo, "gateway", "main.go"))
	_, errC := os.Stat(filepath.Join(repo, "client", "main.go"))
	if repo == "" || errG != nil || errC != nil {
		return "not available yet: the gateway/ and client/ binaries are not in the tree"
	}
	return ""
}

type gozoneBins struct{ portal, gateway, client string }

func buildGozone(ctx context.Context, repo, dir string) (gozoneBins, error) {
	b := gozoneBins{
		portal:  filepath.Join(dir, "gozone-portal"),
		gateway: filepath.Join(dir, "gozone-gateway"),
		client:  filepath.Join(dir, "gozone-client"),
	}
	for _, x := range [][2]string{{b.portal, "./examples/portal/cmd/portal"}, {b.gateway, "./gateway"}, {b.client, "./client"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", x[0], x[1])
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %v: %s", x[1], err, out)
		}
	}
	return b, nil
}

// tailBuf keeps the last 2 KiB a process wrote, for error messages.
type tailBuf struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuf) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = append(t.b[:0], t.b[len(t.b)-2048:]...)
	}
	return len(p), nil
}

func (t *tailBuf) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// gozoneDeploy is one portal + gateway + client on a topology.
type gozoneDeploy struct {
	tp                      *topo.Topology
	bins                    gozoneBins
	clientEnv               []string
	portal, gateway, client *topo.Proc
	portalLog, gwLog, clLog *tailBuf
	// Full logs since the last reset, kept for failed set-up probes.
	portalProbe, gwProbe, clProbe *captureBuf
	echo                          netip.AddrPort
	// profiledClientPid is the first client's pid when it writes a CPU
	// profile (--profile; restarted clients do not).
	profiledClientPid int
}

// portalConfig is the development portal's configuration: one site, one
// actor allowed to reach the resource network.
func portalConfig(tp *topo.Topology, gwToken, clToken string) string {
	return fmt.Sprintf(`account: {slug: bench, name: Bench}
secret: %q
sites:
  - {name: bench, gateway_tokens: [%q]}
actors:
  - {name: bench, groups: [everyone], tokens: [%q]}
resources:
  - {name: resources, type: cidr, address: %q, sites: [bench]}
policies:
  - {group: everyone, resource: resources}
relays:
  builtin: {enabled: true, public_ip: %q, min_port: 49152, max_port: 65535}
`, randHex(32), gwToken, clToken, topo.ResourceV4.String(), tp.Portal.IPv4.String())
}

// gozoneEnv is how the binaries are configured (Firezone's variables).
func gozoneEnv(tp *topo.Topology, token, name string, extra ...string) []string {
	env := append(os.Environ(),
		"FIREZONE_API_URL=ws://"+netip.AddrPortFrom(tp.Portal.IPv4, portalHTTPPort).String(),
		"FIREZONE_TOKEN="+token,
		"FIREZONE_ID="+randHex(32),
		"FIREZONE_NAME="+name,
		"FIREZONE_LOG_FORMAT=json",
		"FIREZONE_NO_TELEMETRY=true",
	)
	return append(env, extra...)
}

// deployGozone starts portal, gateway and client on tp. profGW and profCL,
// when not empty, are the CPU profile files of the gateway and of the
// first client (see profile.go).
func deployGozone(ctx context.Context, tp *topo.Topology, bins gozoneBins, dir string, tunThreads int, profGW, profCL string) (*gozoneDeploy, error) {
	d := &gozoneDeploy{tp: tp, bins: bins, portalLog: &tailBuf{}, gwLog: &tailBuf{}, clLog: &tailBuf{},
		portalProbe: &captureBuf{}, gwProbe: &captureBuf{}, clProbe: &captureBuf{},
		echo: netip.AddrPortFrom(tp.Resource.IPv4, echoPort)}
	gwToken, clToken := "gw-bench-"+randHex(12), "client-bench-"+randHex(12)
	cfg := filepath.Join(dir, "portal-"+randHex(4)+".yaml")
	if err := os.WriteFile(cfg, []byte(portalConfig(tp, gwToken, clToken)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bins.portal, "--config", cfg, "--log-format", "json",
		"--listen", netip.AddrPortFrom(tp.Portal.IPv4, portalHTTPPort).String(),
		"--relay-listen", netip.AddrPortFrom(tp.Portal.IPv4, portalTURNPort).String())
	w := io.MultiWriter(d.portalLog, d.portalProbe)
	cmd.Stdout, cmd.Stderr = w, w
	var err error
	if d.portal, err = tp.Portal.Start(cmd); err != nil {
		return nil, err
	}
	if err := waitListening(ctx, tp.Portal, portalHTTPPort, d.portal, d.portalLog); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if err := tp.Resource.UDPSourceEcho(d.echo); err != nil {
		return nil, err
	}
	cmd = exec.Command(bins.gateway)
	cmd.Env = gozoneEnv(tp, gwToken, "bench-gateway", "FIREZONE_NUM_TUN_THREADS="+strconv.Itoa(tunThreads))
	if profGW != "" {
		cmd.Env = append(cmd.Env, profileEnv(profGW)...)
	}
	w = io.MultiWriter(d.gwLog, d.gwProbe)
	cmd.Stdout, cmd.Stderr = w, w
	if d.gateway, err = tp.Gateway.Start(cmd); err != nil {
		return nil, err
	}
	d.clientEnv = gozoneEnv(tp, clToken, "bench-client", "FIREZONE_DNS_CONTROL=disabled")
	var profEnv []string
	if profCL != "" {
		profEnv = profileEnv(profCL)
	}
	if err := d.startClient(profEnv...); err != nil {
		return nil, err
	}
	if profCL != "" {
		d.profiledClientPid = d.client.Pid()
	}
	if _, err := d.firstReply(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w%s", err, d.logs())
	}
	return d, nil
}

func (d *gozoneDeploy) startClient(extraEnv ...string) error {
	cmd := exec.Command(d.bins.client)
	cmd.Env = append(append([]string(nil), d.clientEnv...), extraEnv...)
	w := io.MultiWriter(d.clLog, d.clProbe)
	cmd.Stdout, cmd.Stderr = w, w
	var err error
	d.client, err = d.tp.Client.Start(cmd)
	return err
}

// logs is the tail of every process's output, for errors.
func (d *gozoneDeploy) logs() string {
	return fmt.Sprintf("\n--- gateway log tail:\n%s\n--- client log tail:\n%s\n--- portal log tail:\n%s", d.gwLog, d.clLog, d.portalLog)
}

// firstReply waits until the client has a route to the resource network
// through something other than its LAN (the tunnel is configured), then
// sends UDP probes to the resource's echo server (one a second) and
// returns the time from the first probe to the first reply. Its errors
// do not carry the logs (callers add d.logs() or keep them elsewhere).
func (d *gozoneDeploy) firstReply(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		if ok, err := d.routed(); err == nil && ok {
			break
		}
		select {
		case <-d.client.Done():
			return 0, fmt.Errorf("gozone client exited: %v", d.client.Wait(ctx))
		case <-d.gateway.Done():
			return 0, fmt.Errorf("%w: gozone gateway exited: %v", errNoMoreProbes, d.gateway.Wait(ctx))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("gozone client: no route to %s through the tunnel after %v", topo.ResourceV4, timeout)
		}
	}
	c, err := d.tp.Client.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 128)
	start := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := c.WriteToUDPAddrPort([]byte("setup"), d.echo); err != nil {
			return 0, err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			return time.Since(start), nil
		}
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return 0, fmt.Errorf("gozone: no reply from %s through the tunnel within %v", d.echo, timeout)
}

// routed reports whether the client routes the resource through a link
// other than its LAN interface.
func (d *gozoneDeploy) routed() (bool, error) {
	rs, err := d.tp.Client.NS.Netlink().RouteGet(d.echo.Addr().AsSlice())
	if err != nil || len(rs) == 0 {
		return false, err
	}
	l, err := d.tp.Client.NS.Netlink().LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return false, err
	}
	return l.Attrs().Name != d.tp.Client.Iface, nil
}

// procs are the processes whose CPU is charged to the path: gateway and
// client, and on the relayed path the portal too, whose built-in TURN
// relay forwards every packet (its control-plane work is negligible
// during a run).
func (d *gozoneDeploy) procs(relayed bool) []namedPid {
	ps := []namedPid{{"gozone gateway", d.gateway.Pid()}, {"gozone client", d.client.Pid()}}
	if relayed {
		ps = append(ps, namedPid{"dev portal+relay", d.portal.Pid()})
	}
	return ps
}

// waitListening waits (bounded) for a TCP listener on port in h.
func waitListening(ctx context.Context, h *topo.Host, port int, p *topo.Proc, log *tailBuf) error {
	for i := 0; i < 200; i++ {
		if ok, err := listening(h, port); err != nil || ok {
			return err
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited: %s", log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("not listening after 10 s: " + log.String())
}

// rxBytes is the received byte counter of a host's main interface.
func rxBytes(h *topo.Host) uint64 {
	l, err := h.NS.Netlink().LinkByName(h.Iface)
	if err != nil || l.Attrs().Statistics == nil {
		return 0
	}
	return l.Attrs().Statistics.RxBytes
}

// moduleRoot finds the directory holding go.mod above the working
// directory ("" when there is none).
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
