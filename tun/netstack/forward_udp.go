package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// handleUDP is the UDP forwarder's handler. gVisor calls it, on the
// goroutine inside Send, for a datagram of a 4-tuple without an endpoint:
// it creates the flow's endpoint (which takes this first datagram) and
// leaves the rest to a goroutine. Later datagrams of the flow go to the
// endpoint directly.
func (f *forwarder) handleUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst := addrOf(id.LocalAddress)
	if f.dev.isLocal(dst) {
		f.toSelf.Add(1)
		return
	}
	if badDestination(dst) {
		f.badDest.Add(1)
		return
	}
	if f.udpActive.Load() >= int64(f.cfg.MaxUDPFlows) || !f.start(nil) {
		f.udpDropped.Add(1)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// Another datagram of the same flow won the race.
		f.udpDropped.Add(1)
		f.done(nil)
		return
	}
	tunnel := gonet.NewUDPConn(&wq, ep)
	target := netip.AddrPortFrom(f.cfg.Redirect(dst), id.LocalPort)
	f.udpFlows.Add(1)
	f.udpActive.Add(1)
	go func() {
		defer f.done(nil)
		defer f.udpActive.Add(-1)
		f.udpFlow(tunnel, target)
	}()
}

// udpFlow dials the destination and copies datagrams both ways until the
// flow is idle for UDPIdleTimeout, either side fails or the device closes.
func (f *forwarder) udpFlow(tunnel *gonet.UDPConn, target netip.AddrPort) {
	if !f.track(tunnel) {
		tunnel.Close()
		return
	}
	defer f.untrack(tunnel)
	defer tunnel.Close()
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	real, err := f.cfg.Dial(ctx, "udp", target)
	cancel()
	if err != nil {
		f.udpDropped.Add(1)
		f.log.Debug("forward udp: dial failed", zap.Stringer("dst", target), zap.Error(err))
		return
	}
	if !f.track(real) {
		real.Close()
		return
	}
	defer f.untrack(real)
	defer real.Close()

	var last atomic.Int64 // unix nanos of the last datagram either way
	last.Store(time.Now().UnixNano())
	idle := f.cfg.UDPIdleTimeout
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyDatagrams(real, tunnel, &last, idle)
		real.Close()
		tunnel.Close()
	}()
	copyDatagrams(tunnel, real, &last, idle)
	real.Close()
	tunnel.Close()
	<-done
}

// copyDatagrams moves datagrams from src to dst. It returns on an error of
// either, or when neither direction saw a datagram for idle.
func copyDatagrams(dst, src net.Conn, last *atomic.Int64, idle time.Duration) {
	buf := make([]byte, 65535)
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
				if time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is busy
				}
			}
			return
		}
		last.Store(time.Now().UnixNano())
		if _, err := dst.Write(buf[:n]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && !ne.Timeout() {
				return
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
