// Command quickstart runs a whole gozone deployment in one process, on
// loopback, without root and without configuration: the development portal
// with its built-in TURN relay, a userspace gateway, a small HTTP server as
// the protected resource and userspace clients. It fetches the resource
// through the tunnel directly, then again with the path forced through the
// relay, prints each step and exits 0 when both worked.
//
//	go run ./examples/quickstart          # the demo, then exit
//	go run ./examples/quickstart -keep    # keep running; prints the portal URL and tokens
//
// The resource is published twice: as the CIDR resource 10.99.0.0/24 (the
// userspace gateway redirects 10.99.0.0/24 to 127.0.0.1, because a network
// stack never accepts loopback destinations from a tunnel) and as the DNS
// resource web.quickstart.internal, which the gateway resolves to
// 10.99.0.10 with a built-in hosts table (nothing on the host changes).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gozone/gozone/connlib"
	"github.com/gozone/gozone/connlib/snownet"
	devportal "github.com/gozone/gozone/examples/portal"
)

const (
	dnsName     = "web.quickstart.internal"
	resourceNet = "10.99.0.0/24"
)

var (
	resourceIP = netip.MustParseAddr("10.99.0.10")
	loopback   = netip.MustParseAddr("127.0.0.1")
)

type options struct {
	keep           bool
	verbose        bool
	timeout        time.Duration
	portalListen   string
	relayListen    string
	resourceListen string
}

func main() {
	var o options
	flag.BoolVar(&o.keep, "keep", false, "keep running after the demo (until Ctrl-C) and print the portal URL and tokens, to start the real gateway and client binaries against it")
	flag.BoolVar(&o.verbose, "v", false, "also print the sessions' own log lines")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Second, "give up on the demo after this long")
	flag.StringVar(&o.portalListen, "portal-listen", "127.0.0.1:0", "portal HTTP/WebSocket address")
	flag.StringVar(&o.relayListen, "relay-listen", "127.0.0.1:0", "built-in TURN relay UDP address")
	flag.StringVar(&o.resourceListen, "resource-listen", "127.0.0.1:0", "the protected HTTP server's address (loopback)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "quickstart: FAILED: %v\n", err)
		os.Exit(1)
	}
}

// step prints one line of progress with the time since start.
type stepper struct{ start time.Time }

func (s *stepper) say(format string, args ...any) {
	fmt.Printf("[%6.2fs] %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

func (s *stepper) detail(format string, args ...any) {
	fmt.Printf("           %s\n", fmt.Sprintf(format, args...))
}

func run(o options) error {
	st := &stepper{start: time.Now()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := newLogger(o.verbose)
	defer func() { _ = log.Sync() }()
	st.say("gozone quickstart: everything in this process, on loopback; running as uid %d (needs no root, no TUN device, changes nothing on the host)", os.Getuid())

	// 1. The protected resource.
	web, err := startResource(o.resourceListen)
	if err != nil {
		return err
	}
	defer web.Close()
	port := web.port
	st.say("resource: HTTP server on %v", netip.AddrPortFrom(loopback, port))
	st.detail("published as CIDR resource %s (%v → 127.0.0.1 on the gateway) and DNS resource %s", resourceNet, resourceIP, dnsName)

	// 2. The portal with its relay.
	gwToken, clToken := randomToken(), randomToken()
	cfg, err := portalConfig(gwToken, clToken)
	if err != nil {
		return err
	}
	p, err := devportal.New(devportal.Options{Config: cfg, RelayListen: o.relayListen, Logger: log.Named("portal")})
	if err != nil {
		return fmt.Errorf("starting the portal: %w", err)
	}
	defer p.Close()
	if _, err := p.Listen(o.portalListen); err != nil {
		return fmt.Errorf("portal listen: %w", err)
	}
	st.say("portal: listening at %s, built-in TURN relay at %v/udp", p.URL(), p.RelayAddr())

	// 3. The userspace gateway.
	gw, err := startGateway(ctx, p.URL(), gwToken, log)
	if err != nil {
		return err
	}
	defer gw.stop()
	if err := waitUntil(ctx, o.timeout, gw.g.Ready); err != nil {
		return fmt.Errorf("gateway did not join the portal: %w", err)
	}
	st.say("gateway: joined the portal (userspace: gVisor netstack forwarding to host sockets)")

	demoCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// 4. A client, direct path.
	direct, err := startClient(demoCtx, st, p.URL(), clToken, "quickstart-direct", false, log)
	if err != nil {
		return err
	}
	defer direct.Close()
	if err := fetch(demoCtx, st, direct, fmt.Sprintf("http://%v/", netip.AddrPortFrom(resourceIP, port)), snownet.PathDirect, "CIDR resource"); err != nil {
		return err
	}
	if err := fetch(demoCtx, st, direct, fmt.Sprintf("http://%s:%d/", dnsName, port), snownet.PathDirect, "DNS resource"); err != nil {
		return err
	}

	// 5. A client that may only use the relay.
	relayed, err := startClient(demoCtx, st, p.URL(), clToken, "quickstart-relayed", true, log)
	if err != nil {
		return err
	}
	defer relayed.Close()
	if err := fetch(demoCtx, st, relayed, fmt.Sprintf("http://%s:%d/", dnsName, port), snownet.PathRelayed, "DNS resource, relay only"); err != nil {
		return err
	}
	fs := gw.tun.Device().ForwardStats()
	st.say("gateway forwarded %d TCP connections to the resource; resource served %d requests", fs.TCPForwarded, web.requests())
	st.say("OK: direct and relayed fetches through the tunnel worked")

	if !o.keep {
		return nil
	}
	direct.Close()
	relayed.Close()
	printKeep(p, gwToken, clToken, port)
	<-ctx.Done()
	st.say("shutting down")
	return nil
}

// printKeep tells a person how to point the real binaries at this portal.
func printKeep(p *devportal.Portal, gwToken, clToken string, port uint16) {
	fmt.Printf(`
Still running (Ctrl-C to stop). The portal and its in-process gateway stay up:

  portal URL:     %s
  gateway token:  %s
  client token:   %s

Real client (needs root or CAP_NET_ADMIN for its TUN):
  sudo FIREZONE_API_URL=%s FIREZONE_TOKEN=%s FIREZONE_ID=my-laptop FIREZONE_DNS_CONTROL=disabled client
  curl http://%v/    (the CIDR resource; the in-process gateway serves it)

Real gateway, userspace mode (no root). It joins the same site and the portal may pick it
for new clients; --userspace-map publishes this process's loopback HTTP server under the
CIDR resource's address, as the in-process gateway does:
  FIREZONE_API_URL=%s FIREZONE_TOKEN=%s FIREZONE_ID=my-gateway gateway --userspace \
    --userspace-map %v=127.0.0.1 --host-ip 127.0.0.1 --health-check-addr 127.0.0.1:0
`, p.URL(), gwToken, clToken, p.URL(), clToken, netip.AddrPortFrom(resourceIP, port), p.URL(), gwToken, resourceIP)
}

func portalConfig(gwToken, clToken string) (*devportal.Config, error) {
	return devportal.ParseConfig([]byte(`
account: {slug: quickstart, name: gozone quickstart}
sites:
  - {name: local, gateway_tokens: ["` + gwToken + `"]}
actors:
  - {name: you, email: you@example.com, groups: [everyone], tokens: ["` + clToken + `"]}
resources:
  - {name: web (CIDR), type: cidr, address: ` + resourceNet + `, sites: [local], filters: [{protocol: tcp}, {protocol: udp}, {protocol: icmp}]}
  - {name: web (DNS), type: dns, address: ` + dnsName + `, sites: [local], filters: [{protocol: tcp}, {protocol: udp}, {protocol: icmp}]}
policies:
  - {group: everyone, resource: web (CIDR)}
  - {group: everyone, resource: web (DNS)}
relays:
  builtin: {enabled: true}
`))
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newLogger: warnings always (stderr), the sessions' info lines with -v.
func newLogger(verbose bool) *zap.Logger {
	level := zapcore.WarnLevel
	if verbose {
		level = zapcore.InfoLevel
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), level))
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// resource is the protected HTTP server.
type resource struct {
	srv  *http.Server
	port uint16
	hits chan struct{}
}

func startResource(addr string) (*resource, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("resource listen: %w", err)
	}
	r := &resource{port: netip.MustParseAddrPort(ln.Addr().String()).Port(), hits: make(chan struct{}, 1<<16)}
	r.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case r.hits <- struct{}{}:
		default:
		}
		fmt.Fprintf(w, "Hello from the protected resource! You asked for %s%s from %s.\n", req.Host, req.URL.Path, req.RemoteAddr)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *resource) requests() int { return len(r.hits) }
func (r *resource) Close() error  { return r.srv.Close() }

// gateway is the in-process userspace gateway.
type gateway struct {
	tun    *connlib.UserspaceGatewayTun
	g      *connlib.Gateway
	cancel context.CancelFunc
	done   chan error
}

func startGateway(ctx context.Context, url, token string, log *zap.Logger) (*gateway, error) {
	redirect := func(a netip.Addr) netip.Addr {
		if netip.MustParsePrefix(resourceNet).Contains(a) {
			return loopback
		}
		return a
	}
	ut, err := connlib.NewUserspaceGatewayTun(connlib.UserspaceGatewayConfig{Redirect: redirect, Logger: log.Named("gateway")})
	if err != nil {
		return nil, err
	}
	cfg := connlib.GatewayConfig{
		APIURL: url, Token: token, FirezoneID: "quickstart-gateway", Name: "quickstart-gateway",
		Logger:   log.Named("gateway"),
		Snownet:  connlib.GatewaySnownet{HostIP: loopback},
		Resolver: &connlib.HostsResolver{Hosts: map[string][]netip.Addr{dnsName: {resourceIP}}},
	}
	ut.Configure(&cfg)
	g, err := connlib.NewGateway(cfg)
	if err != nil {
		ut.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	gctx, cancel := context.WithCancel(ctx)
	gw := &gateway{tun: ut, g: g, cancel: cancel, done: make(chan error, 1)}
	go func() { gw.done <- g.Run(gctx) }()
	return gw, nil
}

func (gw *gateway) stop() {
	gw.cancel()
	<-gw.done
}

// startClient starts a userspace client; relayOnly leaves out host and
// server-reflexive candidates so the only path is through the relay.
func startClient(ctx context.Context, st *stepper, url, token, id string, relayOnly bool, log *zap.Logger) (*connlib.UserspaceClient, error) {
	cfg := connlib.ClientConfig{
		APIURL: url, Token: token, FirezoneID: id, Name: id,
		Logger: log.Named(id), HostIP: loopback,
	}
	if relayOnly {
		cfg.Snownet = func(c *snownet.Config) { c.DisableHostCandidates, c.DisableSrflxCandidates = true, true }
	}
	uc, err := connlib.NewUserspaceClient(cfg)
	if err != nil {
		return nil, err
	}
	uc.Start()
	if err := uc.WaitReady(ctx); err != nil {
		uc.Close()
		return nil, fmt.Errorf("client %s did not join the portal: %w", id, err)
	}
	s := uc.Client().Status()
	mode := "host candidates on 127.0.0.1"
	if relayOnly {
		mode = "relay candidates only (host and server-reflexive disabled)"
	}
	st.say("client %s: joined the portal; tunnel %v, %v; DNS %v; %d resources; %s", id, s.IPv4, s.IPv6, s.DNS, len(s.Resources), mode)
	return uc, nil
}

// fetch GETs url through uc, prints what happened and checks the path.
func fetch(ctx context.Context, st *stepper, uc *connlib.UserspaceClient, url string, want snownet.PathKind, what string) error {
	tr := uc.Transport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s (%s): %w", url, what, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	elapsed := time.Since(t0)
	st.say("fetch (%s): GET %s → %s, %d bytes in %v", what, url, resp.Status, len(body), elapsed.Round(time.Millisecond))
	st.detail("response: %s", strings.TrimSpace(string(body)))
	s := uc.Client().Status()
	for _, r := range s.Resources {
		if r.GatewayID != "" {
			st.detail("authorization: resource %q granted, served by gateway %s (connected %v)", r.Name, short(r.GatewayID), r.Connected)
		}
	}
	if len(s.Gateways) == 0 {
		return errors.New("no gateway connection in the client's status")
	}
	g := s.Gateways[0]
	if g.Pair != nil {
		st.detail("candidates: local %s ↔ remote %s", candidate(g.Pair.Local), candidate(g.Pair.Remote))
	}
	st.detail("path: %s; tunnel bytes sent %d, received %d", g.Path, g.TxBytes, g.RxBytes)
	if g.Path != want {
		return fmt.Errorf("%s: path is %s, want %s", what, g.Path, want)
	}
	return nil
}

// candidate shortens an ICE candidate ("candidate:… udp … 127.0.0.1 5000
// typ host …") to "host 127.0.0.1:5000".
func candidate(sdp string) string {
	f := strings.Fields(sdp)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "typ" && i >= 2 {
			return f[i+1] + " " + net.JoinHostPort(f[i-2], f[i-1])
		}
	}
	return sdp
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
