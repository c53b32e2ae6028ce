package topo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

// Host is one machine of the topology: a namespace and its addresses.
// Addresses are invalid (zero) where they do not exist, e.g. IPv6 without
// Options.IPv6. Its methods are safe for concurrent use.
type Host struct {
	// Name is the role: "client", "client-router", "gateway",
	// "gateway-router", "resource", "relay" or "portal".
	Name string
	NS   *netns.NS
	// Iface, IPv4, IPv6: the host's main interface and addresses. For the
	// routers that is the WAN side on the internet; for the client and the
	// gateway the LAN towards their router; for the resource its link to
	// the gateway.
	Iface      string
	IPv4, IPv6 netip.Addr
	// InnerIface, InnerIPv4, InnerIPv6: the routers' LAN side and the
	// gateway's resource-network side; zero elsewhere.
	InnerIface           string
	InnerIPv4, InnerIPv6 netip.Addr

	t testing.TB
}

// Do runs fn on a thread inside the host's namespace (see netns.NS.Do).
func (h *Host) Do(fn func() error) error { return h.NS.Do(fn) }

// Run runs a program inside the host's namespace to completion and returns
// its combined output. ctx bounds it.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	// One buffer for both: exec then copies through a single goroutine.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := h.NS.Start(cmd); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", h.Name, name, err)
	}
	err := cmd.Wait()
	if err != nil {
		err = fmt.Errorf("%s: %s: %w", h.Name, name, err)
	}
	return out.Bytes(), err
}

// Proc is a process started by Host.Start.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Start starts cmd inside the host's namespace. The process is stopped
// (SIGTERM, then SIGKILL after 3 s) by t.Cleanup if it is still running;
// callers may stop it earlier with Stop. Do not call cmd.Wait yourself: use
// Proc.Wait / Proc.Done.
func (h *Host) Start(cmd *exec.Cmd) (*Proc, error) {
	if err := h.NS.Start(cmd); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", h.Name, cmd.Path, err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	h.t.Cleanup(func() { _ = p.Stop() })
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit (or ctx) and returns its exit error.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the process (SIGTERM, SIGKILL after 3 s) and waits for it. It
// returns the exit error, which is usually the signal; calling it again is
// harmless.
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// ListenUDP opens a UDP socket bound to ap inside the host's namespace and
// closes it on cleanup.
func (h *Host) ListenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := h.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen udp %s: %w", h.Name, ap, err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c, nil
}

// ListenTCP opens a TCP listener on ap inside the host's namespace and
// closes it on cleanup.
func (h *Host) ListenTCP(ap netip.AddrPort) (*net.TCPListener, error) {
	var l *net.TCPListener
	err := h.Do(func() (err error) {
		l, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen tcp %s: %w", h.Name, ap, err)
	}
	h.t.Cleanup(func() { l.Close() })
	return l, nil
}

// DialTCP connects from inside the host's namespace to ap, giving up after
// timeout. The caller closes the connection.
func (h *Host) DialTCP(ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial("tcp", ap.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: dial tcp %s: %w", h.Name, ap, err)
	}
	return c, nil
}

// UDPSourceEcho serves UDP on ap inside the host's namespace and answers
// every datagram with the source address it came from, as text
// ("203.0.113.2:40000"): a minimal STUN-like reflector to observe NAT
// mappings. It stops on cleanup.
func (h *Host) UDPSourceEcho(ap netip.AddrPort) error {
	c, err := h.ListenUDP(ap)
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_, _ = c.WriteToUDPAddrPort([]byte(from.String()), from)
		}
	}()
	return nil
}
