package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Keepalive of forwarded connections on the tunnel side: a client that
// vanished without a FIN is noticed and its host socket closed.
const (
	fwdKeepaliveIdle     = 2 * time.Minute
	fwdKeepaliveInterval = 30 * time.Second
	fwdKeepaliveCount    = 4
)

// handleTCP is the TCP forwarder's handler, on its own goroutine per SYN.
// It dials the destination first and completes the handshake only when
// that worked, so the client sees a refused or unreachable port as a RST,
// as it would without the tunnel.
func (f *forwarder) handleTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := addrOf(id.LocalAddress)
	if f.dev.isLocal(dst) {
		// A port of the gateway itself nobody listens on (the kernel
		// would also answer with a RST).
		f.toSelf.Add(1)
		r.Complete(true)
		return
	}
	if badDestination(dst) {
		f.badDest.Add(1)
		r.Complete(true)
		return
	}
	if !f.start(nil) {
		r.Complete(true)
		return
	}
	defer f.done(nil)
	target := netip.AddrPortFrom(f.cfg.Redirect(dst), id.LocalPort)
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	real, err := f.cfg.Dial(ctx, "tcp", target)
	cancel()
	if err != nil {
		f.tcpRefused.Add(1)
		f.log.Debug("forward tcp: dial failed", zap.Stringer("dst", target), zap.Error(err))
		r.Complete(true)
		return
	}
	if !f.track(real) {
		real.Close()
		r.Complete(true)
		return
	}
	defer f.untrack(real)
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		f.tcpRefused.Add(1)
		real.Close()
		r.Complete(true)
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(fwdKeepaliveIdle)
	intv := tcpip.KeepaliveIntervalOption(fwdKeepaliveInterval)
	_ = ep.SetSockOpt(&idle)
	_ = ep.SetSockOpt(&intv)
	_ = ep.SetSockOptInt(tcpip.KeepaliveCountOption, fwdKeepaliveCount)
	tunnel := gonet.NewTCPConn(&wq, ep)
	f.tcpForwarded.Add(1)
	f.tcpActive.Add(1)
	defer f.tcpActive.Add(-1)
	splice(tunnel, real)
}

// halfCloser is a connection whose write side can be shut alone.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// splice copies both ways between a and b until both directions ended. A
// direction that reaches EOF half-closes the other side (so
// request/response protocols that shut their write side keep working); an
// error closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pipe(b, a)
	}()
	_ = pipe(a, b)
	<-done
	a.Close()
	b.Close()
}

// pipe copies src to dst; at EOF it half-closes dst, on an error it
// closes both so the opposite direction stops too.
func pipe(dst, src net.Conn) error {
	_, err := io.Copy(dst, src)
	if err == nil {
		if hc, ok := dst.(halfCloser); ok {
			if hc.CloseWrite() == nil {
				return nil
			}
		}
		err = errors.New("no half close")
	}
	dst.Close()
	src.Close()
	return err
}
