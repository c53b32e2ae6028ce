package connlib

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	devportal "github.com/gozone/gozone/examples/portal"
)

const (
	usWait        = 45 * time.Second // generous: loaded CI machines
	usGatewayTok  = "us-gateway-token-0123456789"
	usClientTok   = "us-client-token-0123456789"
	usDNSName     = "web.quickstart.internal"
	usResourceNet = "10.99.0.0/24"
)

var usResourceIP = netip.MustParseAddr("10.99.0.10")

// usRedirect publishes the host's loopback as 10.99.0.0/24 (gVisor never
// accepts loopback destinations from outside).
func usRedirect(a netip.Addr) netip.Addr {
	if netip.MustParsePrefix(usResourceNet).Contains(a) {
		return netip.MustParseAddr("127.0.0.1")
	}
	return a
}

// usFixture: dev portal (with relay), userspace gateway and userspace
// client in one process, and real servers on loopback as the resource.
type usFixture struct {
	portal      *devportal.Portal
	gwTun       *UserspaceGatewayTun
	gw          *Gateway
	client      *UserspaceClient
	tcpPort     uint16 // echo server (allowed)
	udpPort     uint16 // echo server (allowed)
	webPort     uint16 // HTTP server (allowed)
	blocked     uint16 // echo server the filters do not allow
	sink        uint16 // reads to EOF, answers with the count (benchmarks)
	blockedHits *int64Counter
	gwDone      chan error
}

type int64Counter struct {
	mu sync.Mutex
	n  int64
}

func (c *int64Counter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *int64Counter) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// usTCPEcho serves an echo on a loopback port; hits counts connections.
func usTCPEcho(t testing.TB, hits *int64Counter) uint16 {
	return usServeTCP(t, func(c net.Conn) {
		if hits != nil {
			hits.add()
		}
		_, _ = io.Copy(c, c)
	})
}

// usSink accepts TCP connections, reads to EOF and answers with the
// number of bytes read (8 bytes, big endian).
func usSink(t testing.TB) uint16 {
	return usServeTCP(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
		n, _ := io.Copy(io.Discard, c)
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(n))
		_, _ = c.Write(buf[:])
	})
}

// usServeTCP runs handle for each connection to a loopback port (closing
// the connection after it) and returns the port; cleanup closes the
// listener and waits for every handler, so the leak checks stay exact.
func usServeTCP(t testing.TB, handle func(net.Conn)) uint16 {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

func usUDPEcho(t testing.TB) uint16 {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
}

// usHTTP serves "/" (a greeting) and "/bytes?n=N" (N zero bytes).
func usHTTP(t testing.TB) uint16 {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the resource, %s\n", r.Host)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(zeros))
			if _, err := w.Write(zeros[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

func usPortalConfig(t testing.TB, f *usFixture) *devportal.Config {
	filters := fmt.Sprintf(`[{protocol: tcp, ports: "%d"}, {protocol: tcp, ports: "%d"}, {protocol: tcp, ports: "%d"}, {protocol: udp, ports: "%d"}, {protocol: icmp}]`,
		f.tcpPort, f.webPort, f.sink, f.udpPort)
	c, err := devportal.ParseConfig([]byte(`
account: {slug: userspace}
sites:
  - {name: local, gateway_tokens: ["` + usGatewayTok + `"]}
actors:
  - {name: dev, email: dev@example.com, groups: [devs], tokens: ["` + usClientTok + `"]}
resources:
  - {name: web, type: cidr, address: ` + usResourceNet + `, sites: [local], filters: ` + filters + `}
  - {name: web-dns, type: dns, address: ` + usDNSName + `, sites: [local], filters: ` + filters + `}
policies:
  - {group: devs, resource: web}
  - {group: devs, resource: web-dns}
relays:
  builtin: {enabled: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// usSetup starts everything; log may be nil (quiet, for benchmarks).
func usSetup(t testing.TB, log *zap.Logger) *usFixture {
	t.Helper()
	if log == nil {
		log = zap.NewNop()
	}
	f := &usFixture{blockedHits: &int64Counter{}, gwDone: make(chan error, 1)}
	f.tcpPort = usTCPEcho(t, nil)
	f.blocked = usTCPEcho(t, f.blockedHits)
	f.udpPort = usUDPEcho(t)
	f.webPort = usHTTP(t)
	f.sink = usSink(t)

	p, err := devportal.New(devportal.Options{Config: usPortalConfig(t, f), RelayListen: "127.0.0.1:0", Logger: log.Named("portal")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	f.portal = p

	ut, err := NewUserspaceGatewayTun(UserspaceGatewayConfig{Redirect: usRedirect, Logger: log.Named("gw")})
	if err != nil {
		t.Fatal(err)
	}
	gcfg := GatewayConfig{
		APIURL: p.URL(), Token: usGatewayTok, FirezoneID: "us-gateway", Name: "us-gateway",
		Logger: log.Named("gateway"), Snownet: GatewaySnownet{HostIP: netip.MustParseAddr("127.0.0.1")},
		Resolver: &HostsResolver{Hosts: map[string][]netip.Addr{usDNSName: {usResourceIP}}, NoFallback: true},
	}
	ut.Configure(&gcfg)
	g, err := NewGateway(gcfg)
	if err != nil {
		ut.Close()
		t.Fatal(err)
	}
	f.gwTun, f.gw = ut, g
	ctx, cancel := context.WithCancel(context.Background())
	go func() { f.gwDone <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.gwDone:
		case <-time.After(usWait):
			t.Error("gateway Run did not return")
		}
	})
	deadline := time.Now().Add(usWait)
	for !g.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("gateway not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.client = usStartClient(t, p, log, nil)
	return f
}

// usStartClient starts a userspace client against p; mod may adjust the
// snownet configuration (relay-only).
func usStartClient(t testing.TB, p *devportal.Portal, log *zap.Logger, mod func(*ClientConfig)) *UserspaceClient {
	t.Helper()
	cfg := ClientConfig{
		APIURL: p.URL(), Token: usClientTok, FirezoneID: "us-client-" + t.Name(), Name: "us-client",
		Logger: log.Named("client"), HostIP: netip.MustParseAddr("127.0.0.1"),
	}
	if mod != nil {
		mod(&cfg)
	}
	uc, err := NewUserspaceClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	uc.Start()
	t.Cleanup(func() { uc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), usWait)
	defer cancel()
	if err := uc.WaitReady(ctx); err != nil {
		t.Fatalf("client not ready: %v", err)
	}
	return uc
}

func usCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), usWait)
	t.Cleanup(cancel)
	return ctx
}
