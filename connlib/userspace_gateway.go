package connlib

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"go.uber.org/zap"

	"github.com/gozone/gozone/tun/netstack"
)

// UserspaceGatewayConfig configures NewUserspaceGatewayTun. Zero values
// mean the defaults.
type UserspaceGatewayConfig struct {
	// MTU of the tunnel device; default 1280 (as the kernel TUN).
	MTU int
	// Redirect maps a destination clients use to the address dialled on
	// the host (ports are kept); nil: unchanged. For resources on the
	// gateway host's own loopback, which a network stack never accepts
	// from outside: publish them under a normal prefix (the quickstart
	// uses 10.99.0.0/24) and redirect that prefix to 127.0.0.1.
	Redirect func(netip.Addr) netip.Addr
	// Dial opens the host sockets of forwarded flows; nil: net.Dialer.
	Dial func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
	// Forward tunes the forwarder further (timeouts, limits); its Dial,
	// Redirect and Logger are taken from the fields above.
	Forward netstack.ForwardConfig
	// Logger; nil means zap.NewNop().
	Logger *zap.Logger
}

// UserspaceGatewayTun is a gateway's tunnel device without a TUN and
// without root: a gVisor network stack that accepts the TCP connections,
// UDP flows and ICMP echo requests clients send to resources and opens real
// sockets to them on the gateway's host (tun/netstack's forwarding mode).
// The gateway session filters every packet before it reaches the stack and
// lets through only replies of flows it tracks, so access control is the
// same as in kernel mode. It also implements GatewayOS (the tunnel
// addresses the portal assigns become the stack's own) and supplies the
// ListenPacket the session's DNS server binds with.
//
// Use it through Configure:
//
//	ut, err := connlib.NewUserspaceGatewayTun(connlib.UserspaceGatewayConfig{Logger: log})
//	cfg := connlib.GatewayConfig{APIURL: url, Token: token, FirezoneID: id, Name: name, Logger: log}
//	ut.Configure(&cfg)
//	g, err := connlib.NewGateway(cfg) // g.Run closes the device
type UserspaceGatewayTun struct {
	dev *netstack.Device
}

var (
	_ Tun       = (*netstack.Device)(nil)
	_ Tun       = (*UserspaceGatewayTun)(nil)
	_ GatewayOS = (*UserspaceGatewayTun)(nil)
)

// NewUserspaceGatewayTun creates the forwarding stack. Its addresses come
// from the portal (SetInterface).
func NewUserspaceGatewayTun(cfg UserspaceGatewayConfig) (*UserspaceGatewayTun, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	fc := cfg.Forward
	fc.Dial, fc.Redirect, fc.Logger = cfg.Dial, cfg.Redirect, log.Named("forward")
	dev, err := netstack.NewForwarding(netstack.Config{MTU: cfg.MTU, Name: "userspace-gateway"}, fc)
	if err != nil {
		return nil, err
	}
	return &UserspaceGatewayTun{dev: dev}, nil
}

// Configure sets cfg's Tun, Interface and ListenPacket to this device.
func (u *UserspaceGatewayTun) Configure(cfg *GatewayConfig) {
	cfg.Tun = u
	cfg.Interface = u
	cfg.ListenPacket = u.ListenPacket
}

// Device is the underlying network stack (ForwardStats, Stats).
func (u *UserspaceGatewayTun) Device() *netstack.Device { return u.dev }

// SetInterface implements GatewayOS: the tunnel addresses become the
// stack's own (the DNS server binds there; everything else is forwarded).
// Routes need nothing: the stack takes every destination.
func (u *UserspaceGatewayTun) SetInterface(_ context.Context, s GatewayInterface) error {
	return u.dev.SetAddrs([]netip.Addr{s.IPv4, s.IPv6})
}

// ListenPacket opens a UDP socket on the stack (GatewayConfig.ListenPacket);
// address must be an IP literal with a port.
func (u *UserspaceGatewayTun) ListenPacket(network, address string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("connlib: userspace gateway: %w: %q", netstack.ErrBadNetwork, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("connlib: userspace gateway listen %q: %w", address, err)
	}
	return u.dev.ListenUDP(ap)
}

// PollRecvMany implements Tun.
func (u *UserspaceGatewayTun) PollRecvMany(ctx context.Context, bufs [][]byte, sizes []int, offset int) (int, error) {
	return u.dev.PollRecvMany(ctx, bufs, sizes, offset)
}

// SendReady implements Tun.
func (u *UserspaceGatewayTun) SendReady(ctx context.Context) error { return u.dev.SendReady(ctx) }

// Send implements Tun.
func (u *UserspaceGatewayTun) Send(bufs [][]byte, offset int) (int, error) {
	return u.dev.Send(bufs, offset)
}

// BatchSize implements Tun.
func (u *UserspaceGatewayTun) BatchSize() int { return u.dev.BatchSize() }

// MTU implements Tun.
func (u *UserspaceGatewayTun) MTU() int { return u.dev.MTU() }

// Name implements Tun.
func (u *UserspaceGatewayTun) Name() string { return u.dev.Name() }

// Close implements Tun: it closes the stack, every forwarded flow and its
// host sockets.
func (u *UserspaceGatewayTun) Close() error { return u.dev.Close() }
