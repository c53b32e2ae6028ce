package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/gozone/gozone/tun"
)

// fullAddr converts ap to gVisor's form. An invalid address (port only)
// means "any address" of the family given by the stack's addresses,
// preferring IPv4.
func (d *Device) fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, error) {
	a := ap.Addr().Unmap().WithZone("")
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	conf := d.conf.Load()
	switch {
	case a.Is4():
		if !conf.v4.IsValid() {
			return fa, 0, fmt.Errorf("%w: %v", ErrNoFamily, a)
		}
		fa.Addr = tcpip.AddrFrom4(a.As4())
		return fa, ipv4.ProtocolNumber, nil
	case a.Is6():
		if !conf.v6.IsValid() {
			return fa, 0, fmt.Errorf("%w: %v", ErrNoFamily, a)
		}
		fa.Addr = tcpip.AddrFrom16(a.As16())
		return fa, ipv6.ProtocolNumber, nil
	case conf.v4.IsValid():
		return fa, ipv4.ProtocolNumber, nil
	default:
		return fa, ipv6.ProtocolNumber, nil
	}
}

// ListenTCP listens for TCP connections on addr (an invalid address with a
// port means any address of the stack's preferred family, IPv4 first).
func (d *Device) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if d.isClosed.Load() {
		return nil, tun.ErrClosed
	}
	fa, proto, err := d.fullAddr(addr)
	if err != nil {
		return nil, err
	}
	return gonet.ListenTCP(d.stack, fa, proto)
}

// ListenUDP opens an unconnected UDP socket bound to addr (port 0 picks
// one) for ReadFrom and WriteTo.
func (d *Device) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	if d.isClosed.Load() {
		return nil, tun.ErrClosed
	}
	fa, proto, err := d.fullAddr(addr)
	if err != nil {
		return nil, err
	}
	return d.udp(&fa, nil, proto)
}

// udp makes a UDP socket, bound to laddr and connected to raddr when given.
func (d *Device) udp(laddr, raddr *tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, terr := d.stack.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack: udp socket: %s", terr)
	}
	if laddr != nil {
		if terr := ep.Bind(*laddr); terr != nil {
			ep.Close()
			return nil, &net.OpError{Op: "bind", Net: "udp", Err: errors.New(terr.String())}
		}
	}
	if raddr != nil {
		if terr := ep.Connect(*raddr); terr != nil {
			ep.Close()
			return nil, &net.OpError{Op: "connect", Net: "udp", Err: errors.New(terr.String())}
		}
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// DialContext connects to address through the stack, like net.Dialer's
// DialContext: network is "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6";
// address is "host:port" where host is an IP literal or a name resolved
// with LookupHost. With several addresses it tries each in turn.
func (d *Device) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.isClosed.Load() {
		return nil, tun.ErrClosed
	}
	var want4, want6 bool
	switch network {
	case "tcp", "udp":
		want4, want6 = true, true
	case "tcp4", "udp4":
		want4 = true
	case "tcp6", "udp6":
		want6 = true
	default:
		return nil, fmt.Errorf("%w: %q", ErrBadNetwork, network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("netstack: bad port in %q", address)
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip.Unmap().WithZone("")}
	} else if addrs, err = d.LookupHost(ctx, host); err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range addrs {
		if (a.Is4() && !want4) || (a.Is6() && !want6) {
			continue
		}
		c, err := d.dial(ctx, network[:3], netip.AddrPortFrom(a, uint16(port)))
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
		firstErr = fmt.Errorf("netstack: no %s address for %q", network, host)
	}
	return nil, firstErr
}

func (d *Device) dial(ctx context.Context, proto string, ap netip.AddrPort) (net.Conn, error) {
	fa, np, err := d.fullAddr(ap)
	if err != nil {
		return nil, err
	}
	if proto == "tcp" {
		return gonet.DialContextTCP(ctx, d.stack, fa, np)
	}
	return d.udp(nil, &fa, np)
}

// LookupHost resolves host to addresses by asking the configured DNS
// servers through the tunnel (Go's resolver with its dialer replaced; the
// local hosts file is still consulted first, as net.Resolver does).
func (d *Device) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	servers := d.conf.Load().dns
	if len(servers) == 0 {
		return nil, ErrNoDNS
	}
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var firstErr error
			for _, s := range servers {
				c, err := d.DialContext(ctx, network, netip.AddrPortFrom(s, 53).String())
				if err == nil {
					return c, nil
				}
				if firstErr == nil {
					firstErr = err
				}
			}
			return nil, firstErr
		},
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, err
}
