package connlib

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gozone/gozone/tun/netstack"
)

// ErrUserspaceClientClosed is returned by dials after Close or after the
// session ended.
var ErrUserspaceClientClosed = errors.New("connlib: userspace client closed")

// UserspaceClient embeds a client session in a Go program: the session
// runs on a gVisor network stack instead of a TUN device, so it needs no
// root and changes nothing on the host (no interface, routes or DNS). The
// program reaches resources through DialContext (TCP and UDP; names are
// resolved by the session's DNS, so DNS resources work) or an
// http.Transport built on it.
//
//	uc, err := connlib.NewUserspaceClient(connlib.ClientConfig{APIURL: url, Token: tok, FirezoneID: id})
//	uc.Start()
//	defer uc.Close()
//	resp, err := (&http.Client{Transport: uc.Transport()}).Get("http://web.internal/")
//
// All methods are safe for concurrent use.
type UserspaceClient struct {
	c   *Client
	dev *netstack.Device

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// userspaceClientOS applies the session's interface to the stack: the
// tunnel addresses become its own, the sentinel resolvers its DNS servers.
// Routes need nothing: the stack sends every destination into the session,
// whose routing table decides.
type userspaceClientOS struct{ dev *netstack.Device }

var _ ClientOS = userspaceClientOS{}

func (o userspaceClientOS) SetInterface(_ context.Context, cfg ClientInterface) error {
	if err := o.dev.SetAddrs([]netip.Addr{cfg.IPv4, cfg.IPv6}); err != nil {
		return err
	}
	o.dev.SetDNS(cfg.DNS)
	return nil
}

func (userspaceClientOS) UpdateRoutes(context.Context, []netip.Prefix, []netip.Prefix) error {
	return nil
}

// NewUserspaceClient creates a client session on a new network stack. cfg
// is as for NewClient except that Tun and OS must be nil (they are the
// stack's). Nothing is sent before Start.
func NewUserspaceClient(cfg ClientConfig) (*UserspaceClient, error) {
	if cfg.Tun != nil || cfg.OS != nil {
		return nil, errors.New("connlib: NewUserspaceClient supplies Tun and OS itself; leave them nil")
	}
	if len(cfg.SystemResolvers) == 0 {
		// The session answers DNS only when it has an upstream for the
		// names that are not resources; an embedding program usually
		// sets none, so take the host's (they are asked from the host,
		// not through the tunnel).
		cfg.SystemResolvers = userspaceHostResolvers()
	}
	dev, err := netstack.NewDeferred(netstack.Config{Name: "userspace-client"})
	if err != nil {
		return nil, err
	}
	cfg.Tun = dev
	cfg.OS = userspaceClientOS{dev: dev}
	c, err := NewClient(cfg)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return &UserspaceClient{c: c, dev: dev, done: make(chan struct{})}, nil
}

// userspaceHostResolvers returns the nameservers of /etc/resolv.conf, or
// 127.0.0.53 (systemd-resolved's stub) when it lists none: resource names
// never need them, other names then fail instead of DNS not working at all.
func userspaceHostResolvers() []netip.Addr {
	var out []netip.Addr
	if cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
		for _, s := range cc.Servers {
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) == 0 {
		out = []netip.Addr{netip.MustParseAddr("127.0.0.53")}
	}
	return out
}

// Client is the session (Status, Reset, Ready, PublicKey).
func (u *UserspaceClient) Client() *Client { return u.c }

// Device is the network stack (ListenTCP, ListenUDP, Stats).
func (u *UserspaceClient) Device() *netstack.Device { return u.dev }

// Start runs the session in the background until Close or a fatal error
// (see Err). Later calls do nothing.
func (u *UserspaceClient) Start() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started {
		return
	}
	u.started = true
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go func() {
		err := u.c.Run(ctx)
		u.mu.Lock()
		u.err = err
		u.mu.Unlock()
		close(u.done)
	}()
}

// Done is closed when the session has ended (Close, or a fatal error).
func (u *UserspaceClient) Done() <-chan struct{} { return u.done }

// Err is the session's fatal error once Done is closed (nil after Close).
func (u *UserspaceClient) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// Close ends the session and waits until every goroutine of it, of the
// stack and of connections through it has stopped; open connections fail.
// Idempotent.
func (u *UserspaceClient) Close() error {
	u.mu.Lock()
	started, cancel := u.started, u.cancel
	u.started = true // a Start after Close does nothing
	u.mu.Unlock()
	if !started {
		// Run never ran: release the node, the pipeline and the stack.
		u.c.node.Close()
		u.dev.Close()
		u.mu.Lock()
		select {
		case <-u.done:
		default:
			close(u.done)
		}
		u.mu.Unlock()
		return nil
	}
	cancel()
	<-u.done
	return nil
}

// WaitReady blocks until the portal's first configuration is applied (the
// tunnel addresses and DNS exist), ctx is done or the session ended.
func (u *UserspaceClient) WaitReady(ctx context.Context) error {
	select {
	case <-u.done: // checked first: Ready stays closed after the end
		return u.endErr()
	default:
	}
	select {
	case <-u.c.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-u.done:
		return u.endErr()
	}
}

// endErr is what calls get once the session has ended.
func (u *UserspaceClient) endErr() error {
	if err := u.Err(); err != nil {
		return err
	}
	return ErrUserspaceClientClosed
}

// DialContext connects through the tunnel, like net.Dialer.DialContext:
// network is tcp, tcp4, tcp6, udp, udp4 or udp6; address is host:port
// where host is an IP literal or a name, resolved by the session's DNS
// (DNS resources get their proxy addresses; other names go to the
// upstream resolvers). It waits for the session to be ready first. The
// first connection to a resource also waits while the session asks the
// portal for access and connects to the gateway.
func (u *UserspaceClient) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := u.WaitReady(ctx); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return u.dev.DialContext(ctx, network, address)
	}
	addrs, err := u.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range addrs {
		if (network == "tcp4" || network == "udp4") && !a.Is4() || (network == "tcp6" || network == "udp6") && !a.Is6() {
			continue
		}
		c, err := u.dev.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("connlib: no %s address for %q", network, host)
	}
	return nil, firstErr
}

// Transport returns an http.Transport whose connections go through the
// tunnel (no proxy from the environment). Each call returns a new one.
func (u *UserspaceClient) Transport() *http.Transport {
	return &http.Transport{
		DialContext:           u.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
