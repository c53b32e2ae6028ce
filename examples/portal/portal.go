package devportal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/examples/portal/relay"
	"github.com/gozone/gozone/phoenix"
)

// DefaultAuthorizationTimeout is how long the portal waits for a gateway's
// authorization_created before telling the client "offline" (reference
// §2.2 step 4).
const DefaultAuthorizationTimeout = 15 * time.Second

// maxRelaysPerDevice: the portal hands each device two relays (§4.4).
const maxRelaysPerDevice = 2

// Options configures a Portal. Zero values mean defaults.
type Options struct {
	// Config is the configuration to start with. If nil, ConfigPath is
	// loaded. Reload re-reads ConfigPath.
	Config     *Config
	ConfigPath string
	// RelayListen is the built-in relay's UDP address (used only when
	// relays.builtin.enabled). Default ":3478"; tests use "127.0.0.1:0".
	RelayListen string
	// AuthorizationTimeout defaults to 15 s.
	AuthorizationTimeout time.Duration
	// Clock defaults to the system clock.
	Clock Clock
	// Logger; nil means no logging. Tokens, keys and PSKs are never logged.
	Logger *zap.Logger
	// Intn picks a random index in [0,n) for load spreading; default
	// crypto/rand.
	Intn func(n int) int
}

// Portal is a running development portal: the gateway and client channels
// over Phoenix, the policy engine and, optionally, the built-in relay.
//
// All methods are safe for concurrent use. Close stops everything.
type Portal struct {
	opts  Options
	log   *zap.Logger
	logs  *logGate
	clock Clock

	gatewaySrv *phoenix.Server
	clientSrv  *phoenix.Server
	relay      *relay.Server // nil when the built-in relay is disabled
	relayID    string

	mu       sync.Mutex
	model    *model
	secret   []byte // portal secret in use
	gateways map[string]*gatewayConn
	clients  map[string]*clientConn
	pending  map[string]*pendingAuthz // by ref
	authz    map[authzKey]*authorization
	ips      ipam
	relays   []relayEntry // what devices are handed, in order
	closed   bool

	httpSrv  *http.Server
	listener net.Listener
}

// relayEntry is one relay as configured; per-device credentials are minted
// from it.
type relayEntry struct {
	id       string
	addr     netip.AddrPort
	builtin  bool
	username string // external only
	password string // external only
}

// New validates the configuration, starts the built-in relay if enabled
// and returns a Portal ready to serve (see Handler and Listen).
func New(opts Options) (*Portal, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.AuthorizationTimeout == 0 {
		opts.AuthorizationTimeout = DefaultAuthorizationTimeout
	}
	if opts.RelayListen == "" {
		opts.RelayListen = relay.DefaultListenAddr
	}
	if opts.Intn == nil {
		opts.Intn = cryptoIntn
	}
	cfg := opts.Config
	if cfg == nil {
		if opts.ConfigPath == "" {
			return nil, errors.New("devportal: Options.Config or Options.ConfigPath is required")
		}
		var err error
		if cfg, err = LoadConfig(opts.ConfigPath); err != nil {
			return nil, err
		}
	} else if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logs := &logGate{}
	p := &Portal{
		opts: opts, log: gated(opts.Logger, logs), logs: logs, clock: opts.Clock,
		gateways: map[string]*gatewayConn{}, clients: map[string]*clientConn{},
		pending: map[string]*pendingAuthz{}, authz: map[authzKey]*authorization{},
	}
	p.secret = secretOrRandom(cfg.Secret)
	if b := cfg.Relays.Builtin; b.Enabled {
		rc := relay.Config{ListenAddr: opts.RelayListen, MinPort: b.MinPort, MaxPort: b.MaxPort,
			Secret: b.Secret, Logger: p.log.Named("relay")}
		if b.PublicIP != "" {
			rc.PublicIP = netip.MustParseAddr(b.PublicIP)
		}
		r, err := relay.New(rc)
		if err != nil {
			if errors.Is(err, relay.ErrPublicIPRequired) {
				return nil, fmt.Errorf("%w: relays.builtin.public_ip: required when the relay listens on %s", ErrConfig, opts.RelayListen)
			}
			return nil, err
		}
		p.relay = r
		p.relayID = derivedUUID("relay", r.Secret())
	}
	p.model = compile(cfg)
	p.relays = p.relayEntries(cfg)
	p.gatewaySrv = phoenix.NewServer(phoenix.ServerConfig{Logger: p.log.Named("phoenix"), Authenticate: p.authenticateGateway})
	p.gatewaySrv.HandleTopic(portal.TopicGateway, gatewayHandler{p})
	p.clientSrv = phoenix.NewServer(phoenix.ServerConfig{Logger: p.log.Named("phoenix"), Authenticate: p.authenticateClient})
	p.clientSrv.HandleTopic(portal.TopicClient, clientHandler{p})
	p.log.Info("portal configured", zap.String("account", cfg.Account.Slug), zap.Int("sites", len(cfg.Sites)),
		zap.Int("actors", len(cfg.Actors)), zap.Int("resources", len(cfg.Resources)),
		zap.Int("policies", len(cfg.Policies)), zap.Int("relays", len(p.relays)))
	return p, nil
}

func secretOrRandom(hexSecret string) []byte {
	if hexSecret != "" {
		b, _ := hex.DecodeString(hexSecret)
		return b
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func cryptoIntn(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return int(v.Int64())
}

func (p *Portal) relayEntries(cfg *Config) []relayEntry {
	var out []relayEntry
	if p.relay != nil {
		out = append(out, relayEntry{id: p.relayID, addr: p.relay.Addr(), builtin: true})
	}
	for _, e := range cfg.Relays.External {
		out = append(out, relayEntry{
			id: orID(e.ID, cfg.Account.Slug, "relay", e.Name), addr: netip.MustParseAddrPort(e.Addr),
			username: e.Username, password: e.Password,
		})
	}
	if len(out) > maxRelaysPerDevice {
		out = out[:maxRelaysPerDevice]
	}
	return out
}

// relaysFor mints the relay list for a device key; expires is UNIX
// seconds.
func (p *Portal) relaysFor(publicKey string, expires int64) portal.Relays {
	out := make(portal.Relays, 0, len(p.relays))
	for _, r := range p.relays {
		e := portal.Relay{ID: r.id, Type: portal.RelayTypeTURN, Addr: r.addr.String(), ExpiresAt: expires}
		if r.builtin {
			e.Username, e.Password = p.relay.Credentials(publicKey, expires)
		} else {
			e.Username, e.Password, e.ExpiresAt = r.username, r.password, relay.GatewayCredentialExpiry
		}
		out = append(out, e)
	}
	return out
}

// Handler serves /gateway/v2/websocket, /client/v2/websocket, /healthz and
// /readyz.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(portal.GatewayPath, p.gatewaySrv)
	mux.Handle(portal.ClientPath, p.clientSrv)
	mux.HandleFunc("/healthz", p.healthz)
	mux.HandleFunc("/readyz", p.healthz)
	return mux
}

// Listen serves Handler on addr (e.g. "127.0.0.1:0") in the background and
// returns the bound address. Use URL for devices.
func (p *Portal) Listen(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devportal: listen: %w", err)
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	p.httpSrv, p.listener = srv, l
	p.mu.Unlock()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("http server stopped", zap.Error(err))
		}
	}()
	p.log.Info("portal listening", zap.Stringer("addr", l.Addr()))
	return l.Addr(), nil
}

// URL is the API URL devices use ("ws://host:port"), valid after Listen.
func (p *Portal) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listener == nil {
		return ""
	}
	return "ws://" + p.listener.Addr().String()
}

// RelayAddr is the built-in relay's address (invalid when disabled).
func (p *Portal) RelayAddr() netip.AddrPort {
	if p.relay == nil {
		return netip.AddrPort{}
	}
	return p.relay.Addr()
}

// Close drops every device, stops the relay and the HTTP server.
func (p *Portal) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, pa := range p.pending {
		pa.timer.Stop()
	}
	for _, a := range p.authz {
		if a.timer != nil {
			a.timer.Stop()
		}
	}
	srv := p.httpSrv
	p.mu.Unlock()
	p.gatewaySrv.Close()
	p.clientSrv.Close()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = srv.Shutdown(ctx)
		cancel()
	}
	if p.relay != nil {
		p.relay.Close()
	}
	p.logs.close()
	return err
}

// push is one message to send after the portal's lock is released, so a
// slow device never stalls the others.
type push struct {
	ch      *phoenix.Channel
	event   string
	payload any
}

type outbox []push

func (o *outbox) add(ch *phoenix.Channel, event string, payload any) {
	if ch != nil {
		*o = append(*o, push{ch, event, payload})
	}
}

func (p *Portal) send(o outbox) {
	for _, m := range o {
		if err := m.ch.Push(m.event, m.payload); err != nil {
			p.log.Debug("push failed", zap.String("event", m.event), zap.Error(err))
		}
	}
}
