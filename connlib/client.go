package connlib

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/routing"
	"github.com/gozone/gozone/connlib/snownet"
	"github.com/gozone/gozone/phoenix"
)

// ClientVersion is the headless-client version announced in the User-Agent.
// The portal checks gateway/client compatibility against it.
const ClientVersion = "1.5.12"

// Errors Client.Run returns for fatal portal failures; binaries match them
// with errors.Is to print one clear line.
var (
	// ErrClientTokenRejected: the portal refused the token (HTTP 401 or
	// token_expired); a new token is needed.
	ErrClientTokenRejected = errors.New("the portal rejected the token")
	// ErrClientLogin: the portal refused the join.
	ErrClientLogin = errors.New("the portal refused the login")
	// ErrClientPortalUnreachable: the portal could not be reached in time.
	ErrClientPortalUnreachable = errors.New("could not reach the portal")
)

// ClientInterface is what the OS layer applies to the tunnel interface: its
// addresses and the DNS servers (the sentinel addresses, which the session
// answers itself) with the search domain.
type ClientInterface struct {
	IPv4, IPv6   netip.Addr
	DNS          []netip.Addr
	SearchDomain string
}

// ClientOS is what a client session cannot do by itself: configure the
// tunnel interface and the routes into it. The session calls it from its
// event loop only (never concurrently), first with the interface, then with
// routes; an error is logged and the session carries on (the next change
// retries with the full state of the interface and the route diff).
type ClientOS interface {
	// SetInterface applies the tunnel addresses and DNS configuration.
	SetInterface(ctx context.Context, cfg ClientInterface) error
	// UpdateRoutes adds and removes routes into the tunnel.
	UpdateRoutes(ctx context.Context, added, removed []netip.Prefix) error
}

// ClientConfig configures a client session. Zero values take defaults.
type ClientConfig struct {
	// Tun is the tunnel device (required). The session owns it from
	// NewClient on and closes it when Run returns.
	Tun Tun
	// APIURL is the portal base URL, e.g. "wss://api.firezone.dev" (the
	// session appends /client/v2). Default portal.DefaultAPIURL.
	APIURL string
	// Token authenticates with the portal (never logged).
	Token string
	// FirezoneID identifies this device (sent as external_id, hashed when
	// it is a UUID). Required.
	FirezoneID string
	// Name is the device name shown in the portal (default: "gozone").
	Name string
	// Logger; nil means zap.NewNop().
	Logger *zap.Logger
	// OS configures the interface and routes; nil does nothing (tests,
	// userspace embeddings).
	OS ClientOS
	// Clock drives the authorization-request throttle, DNS forwarding
	// timeouts and the assigned_ips retries; nil is the system clock.
	Clock snownet.Clock
	// ActivateInternetResource routes everything through the internet
	// resource when the portal offers one.
	ActivateInternetResource bool
	// SystemResolvers are used for names that are not resources when
	// the portal gives no upstream resolvers.
	SystemResolvers []netip.Addr
	// MaxPartitionTime bounds portal reconnection after the first join
	// (0: forever, as Firezone's headless client).
	MaxPartitionTime time.Duration
	// ListenPort of the shared UDP sockets (0: ephemeral).
	ListenPort uint16
	// HostIP restricts host ICE candidates to one address (tests on
	// loopback); zero means every interface address.
	HostIP netip.Addr
	// Snownet, if set, adjusts the snownet configuration before the node
	// is created (buffer sizes, ICE timers, pion vnet in tests).
	Snownet func(*snownet.Config)
	// UserAgent overrides the User-Agent sent to the portal.
	UserAgent string
}

// Client is a client session: it joins the portal's client channel, keeps
// the routing table of resources, asks for access to a resource when the
// first packet for it arrives, connects to the gateway the portal picks
// and answers DNS for DNS resources.
//
// Concurrency: one goroutine (Run) owns the session state; the packet path
// (the Pipeline hook) reads immutable snapshots through atomic pointers and
// never takes the session lock. Status, Ready and Reset may be called from
// any goroutine.
type Client struct {
	cfg   ClientConfig
	log   *zap.Logger
	clock snownet.Clock

	pipe     *Pipeline
	node     *snownet.Node
	table    *routing.Table
	resolver *dns.Resolver
	pending  *clientPending
	view     atomic.Pointer[clientView]

	// Channels from the packet path and other goroutines to Run.
	intents  chan routing.ResourceID
	dnsIn    chan *clientPacket
	ctrlIn   chan *clientPacket
	resetReq chan string
	pktPool  sync.Pool

	ready     chan struct{}
	readyOnce sync.Once
	runOnce   atomic.Bool

	statusMu sync.Mutex
	status   clientStatusState

	// Owned by Run.
	st *clientState
}

// NewClient validates cfg and prepares a session; nothing is sent before
// Run. On error the Tun is not closed.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Tun == nil {
		return nil, errors.New("connlib: ClientConfig.Tun is required")
	}
	if cfg.FirezoneID == "" {
		return nil, errors.New("connlib: ClientConfig.FirezoneID is required")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = portal.DefaultAPIURL
	}
	if cfg.Name == "" {
		cfg.Name = "gozone"
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	clock := cfg.Clock
	if clock == nil {
		clock = systemClientClock{}
	}
	c := &Client{
		cfg:      cfg,
		log:      log,
		clock:    clock,
		table:    routing.New(),
		intents:  make(chan routing.ResourceID, 256),
		dnsIn:    make(chan *clientPacket, 256),
		ctrlIn:   make(chan *clientPacket, 256),
		resetReq: make(chan string, 1),
		ready:    make(chan struct{}),
	}
	c.pktPool.New = func() any { return &clientPacket{buf: make([]byte, 0, 1500)} }
	c.pending = newClientPending(clock, clientBufferPerTarget, clientRequestInterval)
	res, err := dns.NewResolver(dns.Config{Logger: log.Named("dns")})
	if err != nil {
		return nil, err
	}
	c.resolver = res
	c.view.Store(&clientView{})
	c.pipe = NewPipeline(cfg.Tun, (*clientHook)(c))
	scfg := snownet.Config{
		Tun:        c.pipe,
		Logger:     log.Named("snownet"),
		ListenPort: cfg.ListenPort,
		HostIP:     cfg.HostIP,
	}
	if cfg.Snownet != nil {
		cfg.Snownet(&scfg)
	}
	node, err := snownet.NewNode(scfg)
	if err != nil {
		return nil, fmt.Errorf("connlib: creating the tunnel: %w", err)
	}
	c.node = node
	return c, nil
}

// Ready is closed once the portal's first init has been applied (interface
// addresses, DNS, routes): the tunnel is up.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Reset asks the session to start over after a network change or SIGHUP:
// every connection is closed, the WireGuard key replaced, the sockets
// rebound and the portal reconnected with the new public key. Connections
// come back on the next packet. Safe to call from any goroutine; a reset
// already waiting absorbs further ones.
func (c *Client) Reset(reason string) {
	select {
	case c.resetReq <- reason:
	default:
	}
}

// PublicKey is the session's current WireGuard public key.
func (c *Client) PublicKey() snownet.Key { return c.node.PublicKey() }

// Run runs the session until ctx is cancelled (it returns nil) or a fatal
// error happens (wrapping ErrClientTokenRejected, ErrClientLogin or
// ErrClientPortalUnreachable). It closes the node and the Tun before returning.
// Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.runOnce.CompareAndSwap(false, true) {
		return errors.New("connlib: Client.Run called twice")
	}
	defer c.node.Close() // closes the pipeline and the Tun
	c.st = newClientState(c)
	defer c.st.close()
	return c.st.run(ctx)
}

// portalURL is the client channel's endpoint.
func (c *Client) portalURL() string {
	return strings.TrimRight(c.cfg.APIURL, "/") + "/client/v2"
}

// newPortal creates a phoenix client for the client channel; its query
// parameters carry the node's current public key at every (re)connect.
func (c *Client) newPortal() (*phoenix.Client, error) {
	ua := c.cfg.UserAgent
	if ua == "" {
		ua = portal.UserAgent(portal.HostOSInfo(), portal.ComponentHeadlessClient, ClientVersion)
	}
	ext := portal.ExternalID(c.cfg.FirezoneID)
	return phoenix.NewClient(phoenix.ClientConfig{
		URL:       c.portalURL(),
		Token:     c.cfg.Token,
		UserAgent: ua,
		Topic:     portal.TopicClient,
		Logger:    c.log.Named("portal"),
		Params: func() []phoenix.Param {
			return []phoenix.Param{
				{Key: "external_id", Value: ext},
				{Key: "name", Value: c.cfg.Name},
				{Key: "public_key", Value: c.node.PublicKey().String()},
			}
		},
		MaxPartitionTime: c.cfg.MaxPartitionTime,
	})
}

// clientPortalErr maps phoenix's fatal errors onto the session's.
func clientPortalErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, phoenix.ErrInvalidToken):
		return fmt.Errorf("%w: %w", ErrClientTokenRejected, err)
	case errors.Is(err, phoenix.ErrLoginFailed):
		return fmt.Errorf("%w: %w", ErrClientLogin, err)
	case errors.Is(err, phoenix.ErrMaxRetriesReached):
		return fmt.Errorf("%w: %w", ErrClientPortalUnreachable, err)
	}
	return err
}

// clientView is the immutable snapshot the packet path reads.
type clientView struct {
	ipv4, ipv6 netip.Addr
	// ready: resources whose gateway connection is established.
	ready map[routing.ResourceID]bool
	// active: DNS-resource names the gateway confirmed (domain_status
	// Active) on the current connection.
	active map[clientTarget]bool
	// gatewayIPs: tunnel addresses of known gateways (their DNS replies
	// on GatewayDNSPort are the session's).
	gatewayIPs map[netip.Addr]bool
	// sentinels maps sentinel addresses to upstreams.
	sentinels *dns.SentinelMap
}

// clientTarget is what packets wait for: a resource, and for a DNS
// resource the name whose proxy IP they were sent to.
type clientTarget struct {
	rid  routing.ResourceID
	name string
}

// clientPacket is a pooled copy of a packet handed from the packet path to
// the event loop.
type clientPacket struct{ buf []byte }

func (c *Client) getPacket(b []byte) *clientPacket {
	p := c.pktPool.Get().(*clientPacket)
	p.buf = append(p.buf[:0], b...)
	return p
}

func (c *Client) putPacket(p *clientPacket) {
	if cap(p.buf) <= 65536 {
		c.pktPool.Put(p)
	}
}

// Constants of the session (reference §1.4).
const (
	clientBufferPerTarget = 128             // packets buffered per target while connecting
	clientRequestInterval = 2 * time.Second // request_authorization throttle per resource
)

type systemClientClock struct{}

func (systemClientClock) Now() time.Time { return time.Now() }

var (
	_ dns.Clock        = systemClientClock{}
	_ p2pcontrol.Clock = systemClientClock{}
)

// clientInjectTimeout bounds how long the event loop waits for room on the
// Tun when it writes local answers (ICMP errors, DNS replies).
const clientInjectTimeout = time.Second

// clientNoAddr is the zero address: ICMP errors then come from the address
// the packet was sent to.
var clientNoAddr netip.Addr
