package connlib

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/acl"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/snownet"
	"github.com/gozone/gozone/phoenix"
)

// Tunnel address ranges (reference §1.4): device tunnel IPs, routed to the
// gateway's TUN so replies from resources reach it.
var (
	gwTunnelV4 = netip.MustParsePrefix("100.64.0.0/11")
	gwTunnelV6 = netip.MustParsePrefix("fd00:2021:1111::/107")
)

// Errors Run returns; binaries match them with errors.Is to print one clear
// line.
var (
	// ErrGatewayTokenRejected: the portal refused the token (HTTP 401, or the
	// token expired). A new token is needed.
	ErrGatewayTokenRejected = errors.New("the portal rejected the token")
	// ErrGatewayPortalUnreachable: reconnecting gave up (max partition time).
	ErrGatewayPortalUnreachable = errors.New("the portal stayed unreachable for longer than the max partition time")
)

// GatewayVersion is the component version gozone reports to the portal.
const GatewayVersion = "1.5.0"

// GatewayInterface is what the portal's init asks the OS layer to apply
// to the TUN interface.
type GatewayInterface struct {
	IPv4, IPv6 netip.Addr     // the device's tunnel addresses (/32, /128)
	Routes     []netip.Prefix // routed into the TUN
}

// GatewayOS applies interface settings the session cannot set
// itself (addresses, routes). SetInterface is called from the session's
// event loop, again on every init (full resync); it must be idempotent.
type GatewayOS interface {
	SetInterface(ctx context.Context, s GatewayInterface) error
}

type gwSystemClock struct{}

func (gwSystemClock) Now() time.Time { return time.Now() }

// GatewaySnownet are the parts of snownet.Config a session exposes.
type GatewaySnownet struct {
	ListenPort     uint16
	RecvBufferSize int // 0: snownet default (16 MiB)
	SendBufferSize int // 0: snownet default (2 MiB)
	// HostIP restricts host candidates to one address (tests).
	HostIP netip.Addr
}

// GatewayListenPacket opens a datagram socket (net.ListenPacket's signature).
// Sessions use it for their local servers so a userspace device can supply
// its own network stack.
type GatewayListenPacket func(network, address string) (net.PacketConn, error)

// GatewayConfig configures a Gateway. Nil and zero fields take defaults
// where stated.
type GatewayConfig struct {
	Tun        Tun    // required
	APIURL     string // e.g. wss://api.firezone.dev; required
	Token      string // required; never logged
	FirezoneID string // required; sent as external_id (hashed if a UUID)
	Name       string // the gateway's name in the portal
	Logger     *zap.Logger
	// Interface applies addresses and routes; nil: nothing is applied
	// (in-memory Tuns in tests).
	Interface GatewayOS
	Snownet   GatewaySnownet
	Clock     snownet.Clock // nil: system clock (expiries)
	// MaxPartitionTime bounds reconnecting to the portal; 0: forever.
	// Established tunnels keep forwarding meanwhile.
	MaxPartitionTime time.Duration
	// ListenPacket opens the DNS server socket on <tun ip>:53535; nil:
	// net.ListenPacket. The server is skipped when it fails (logged).
	ListenPacket GatewayListenPacket
	// GatewayResolver resolves DNS-resource names; nil: net.DefaultResolver.
	Resolver GatewayResolver
	// TrackerSize is the flow tracker's capacity (0: acl default).
	TrackerSize int
}

// GatewayResolver is what the gateway needs of a DNS resolver (net.Resolver has
// this method).
type GatewayResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Gateway is a gateway session: it keeps the portal's gateway channel
// joined, accepts clients the portal authorizes (WireGuard over ICE via
// snownet, ICE-controlled), enforces the access-control table on every
// packet, and serves DNS resources. Create with NewGateway, run with Run.
//
// Structure: one event loop (Run) consumes the phoenix client's events,
// the snownet node's events, control packets and DNS resolutions handed
// over by the packet path, and a 1 Hz ticker (authorization and NAT
// expiry); it alone touches the session state (clients, relays, interface).
// The packet path is gatewayHook inside the Pipeline between the Tun and
// WireGuard: packets from clients are checked against the acl table (per
// client, copy-on-write) and, for DNS resources, NATed; packets towards
// clients pass only for flows the tracker saw leave. It reads immutable
// snapshots through atomic pointers and never takes the loop's state.
//
// Concurrency: Run owns the session state on one goroutine; Status,
// Ready, PublicKey and Port are safe at any time.
type Gateway struct {
	cfg   GatewayConfig
	log   *zap.Logger
	clock snownet.Clock

	pipe    *Pipeline
	node    *snownet.Node
	acl     *acl.Table
	tracker *acl.Tracker
	hook    *gatewayHook
	nat     *dnsNAT
	session *portal.Session

	// state below is owned by the Run goroutine.
	clients   map[string]*gwClient // by portal client id
	relays    map[string][]snownet.Relay
	iface     GatewayInterface
	dnsConns  []net.PacketConn // the :53535 servers
	ctrlCh    chan gwControlMsg
	resolveC  chan gwResolveResult
	resolving map[string]bool // client id + domain → resolution in flight

	joined  atomic.Bool
	inited  atomic.Bool
	runOnce sync.Once
	closeMu sync.Mutex
	closed  bool
}

// gwClient is one client the portal authorized at least once.
type gwClient struct {
	id         string
	aclID      acl.ClientID
	v4, v6     netip.Addr
	resources  map[acl.ResourceID]portal.GatewayResource
	connected  bool
	lastStatus map[string]bool // domain → last domain_status active
}

// NewGateway validates cfg, binds the UDP sockets and prepares the session.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.Tun == nil {
		return nil, errors.New("connlib: GatewayConfig.Tun is required")
	}
	if cfg.APIURL == "" || cfg.Token == "" || cfg.FirezoneID == "" {
		return nil, errors.New("connlib: GatewayConfig needs APIURL, Token and FirezoneID")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	clock := cfg.Clock
	if clock == nil {
		clock = gwSystemClock{}
	}
	g := &Gateway{
		cfg: cfg, log: log, clock: clock,
		acl:      acl.New(),
		tracker:  acl.NewTracker(acl.TrackerConfig{Size: cfg.TrackerSize}),
		session:  portal.NewSession(log.Named("portal")),
		clients:  make(map[string]*gwClient),
		relays:   make(map[string][]snownet.Relay),
		ctrlCh:   make(chan gwControlMsg, 256),
		resolveC: make(chan gwResolveResult, 64),
	}
	g.nat = newDNSNAT()
	g.hook = newGatewayHook(g)
	g.pipe = NewPipeline(cfg.Tun, g.hook)
	node, err := snownet.NewNode(snownet.Config{
		Tun:        g.pipe,
		Logger:     log.Named("snownet"),
		ListenPort: cfg.Snownet.ListenPort,
		Bind: snownet.BindConfig{
			RecvBufferSize: cfg.Snownet.RecvBufferSize,
			SendBufferSize: cfg.Snownet.SendBufferSize,
			Logger:         log.Named("bind"),
		},
		HostIP: cfg.Snownet.HostIP,
	})
	if err != nil {
		g.pipe.Close()
		return nil, fmt.Errorf("connlib: starting snownet: %w", err)
	}
	g.node = node
	return g, nil
}

// PublicKey is the gateway's WireGuard public key.
func (g *Gateway) PublicKey() snownet.Key { return g.node.PublicKey() }

// Port is the UDP port of the shared sockets.
func (g *Gateway) Port() uint16 { return g.node.Port() }

// Ready reports whether the portal's init has been applied (readiness).
func (g *Gateway) Ready() bool { return g.inited.Load() }

// Run connects to the portal and serves until ctx is cancelled (then every
// client gets goodbye, the node is closed and Run returns nil) or a fatal
// error (wrapping ErrGatewayTokenRejected, ErrGatewayPortalUnreachable or the phoenix
// error). Run may be called once.
func (g *Gateway) Run(ctx context.Context) error {
	err := errors.New("connlib: Gateway.Run called twice")
	g.runOnce.Do(func() { err = g.run(ctx) })
	return err
}

func (g *Gateway) run(ctx context.Context) error {
	defer g.shutdown()
	ua := portal.UserAgent(portal.HostOSInfo(), portal.ComponentGateway, GatewayVersion)
	u, err := portal.GatewayURL(g.cfg.APIURL, portal.LoginParams{
		ExternalID: portal.ExternalID(g.cfg.FirezoneID), Name: g.cfg.Name, PublicKey: g.node.PublicKey().String(),
	})
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/websocket")
	pc, err := phoenix.NewClient(phoenix.ClientConfig{
		URL: base, Token: g.cfg.Token, UserAgent: ua, Topic: portal.TopicGateway,
		Params: func() []phoenix.Param {
			return []phoenix.Param{
				{Key: "external_id", Value: portal.ExternalID(g.cfg.FirezoneID)},
				{Key: "name", Value: g.cfg.Name},
				{Key: "public_key", Value: g.node.PublicKey().String()},
			}
		},
		Logger:           g.log.Named("phoenix"),
		MaxPartitionTime: g.cfg.MaxPartitionTime,
	})
	if err != nil {
		return err
	}
	send := func(event string, payload any) error {
		b, err := json.Marshal(payload)
		if err != nil {
			return err
		}
		return pc.Push(event, b, nil)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	phxDone := make(chan error, 1)
	go func() { phxDone <- pc.Run(runCtx) }()

	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	nodeEvents := g.node.Events()
	phxEvents := pc.Events()
	for {
		select {
		case <-ctx.Done():
			g.goodbyeAll()
			<-phxDone
			return nil
		case err := <-phxDone:
			g.goodbyeAll()
			if err == nil {
				return nil
			}
			return gwPortalError(err)
		case ev, ok := <-phxEvents:
			if !ok {
				phxEvents = nil
				continue
			}
			g.handlePhoenix(ctx, ev, send)
		case ev, ok := <-nodeEvents:
			if !ok {
				return errors.New("connlib: snownet node closed")
			}
			g.handleNode(ev)
		case m := <-g.ctrlCh:
			g.handleControl(ctx, m)
		case r := <-g.resolveC:
			g.handleResolved(r)
		case <-ticker.C:
			g.tick()
		}
	}
}

func gwPortalError(err error) error {
	switch {
	case errors.Is(err, phoenix.ErrInvalidToken), errors.Is(err, phoenix.ErrLoginFailed):
		return fmt.Errorf("%w: %v", ErrGatewayTokenRejected, err)
	case errors.Is(err, phoenix.ErrMaxRetriesReached):
		return fmt.Errorf("%w: %v", ErrGatewayPortalUnreachable, err)
	}
	return err
}

func (g *Gateway) handlePhoenix(ctx context.Context, ev phoenix.Event, send portal.SendFunc) {
	switch ev := ev.(type) {
	case *phoenix.Joined:
		g.joined.Store(true)
		g.log.Info("portal joined")
		if err := g.session.OnJoin(send); err != nil {
			g.log.Warn("after join", zap.Error(err))
		}
	case *phoenix.StateChange:
		if ev.State != phoenix.StateJoined {
			if g.joined.Swap(false) {
				g.log.Warn("portal connection lost; established tunnels keep forwarding", zap.Error(ev.Err))
			}
			g.session.OnDisconnect()
		}
	case *phoenix.PushFailed:
		g.log.Warn("portal refused a message", zap.String("event", ev.Event), zap.Error(ev.Err))
	case *phoenix.Message:
		msg, err := portal.DecodeGatewayIngress(ev.Event, ev.Payload)
		if err != nil {
			if portal.Ignorable(err) {
				g.log.Debug("ignoring portal message", zap.String("event", ev.Event), zap.Error(err))
			} else {
				g.log.Warn("malformed portal message", zap.String("event", ev.Event), zap.Error(err))
			}
			return
		}
		g.handlePortal(ctx, msg)
	}
}

// shutdown closes the node (and with it the pipeline and the Tun) and the
// DNS server.
func (g *Gateway) shutdown() {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	bs, ps, d := g.node.BindStats(), g.pipe.Stats(), g.hook.drops()
	g.log.Info("gateway closing",
		zap.Uint64("wireguard_datagrams", bs.WireGuard), zap.Uint64("stun_datagrams", bs.STUN),
		zap.Uint64("garbage_datagrams", bs.Unknown+bs.ChannelData),
		zap.Uint64("packets_to_resources", ps.ToTun-ps.ToTunDropped), zap.Uint64("packets_to_clients", ps.FromTun-ps.FromTunDropped),
		zap.Uint64("icmp_errors_sent", d.ICMPSent), zap.Uint64("untracked_dropped", d.Untracked))
	for _, c := range g.dnsConns {
		c.Close()
	}
	g.node.Close()
}

// Close releases everything without running (for a Gateway whose Run was
// never called, or after it returned). Idempotent.
func (g *Gateway) Close() error {
	g.shutdown()
	return nil
}

// GatewayStatus is a snapshot of the session.
type GatewayStatus struct {
	PortalJoined bool
	Ready        bool
	Connections  []snownet.ConnStats
	Clients      int
	Pipeline     PipelineStats
	Drops        GatewayDrops
	Bind         snownet.BindStats
}

// Status returns a snapshot; safe at any time.
func (g *Gateway) Status() GatewayStatus {
	return GatewayStatus{
		PortalJoined: g.joined.Load(),
		Ready:        g.inited.Load(),
		Connections:  g.node.Stats(),
		Clients:      g.acl.NumClients(),
		Pipeline:     g.pipe.Stats(),
		Drops:        g.hook.drops(),
		Bind:         g.node.BindStats(),
	}
}

// gwID maps a portal id to the acl's 16-byte id: the UUID's bytes
// when it is one, else the first 16 bytes of its SHA-256 (so any id works).
func gwID(s string) [16]byte {
	var out [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) == 32 {
		if b, err := hex.DecodeString(h); err == nil {
			copy(out[:], b)
			return out
		}
	}
	sum := sha256.Sum256([]byte(s))
	copy(out[:], sum[:16])
	return out
}
