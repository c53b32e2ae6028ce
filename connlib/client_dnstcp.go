package connlib

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	wgtun "golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/gozone/gozone/connlib/dns"
)

// clientDNSTCP serves DNS over TCP on the sentinel addresses. TCP needs a
// real TCP endpoint, so a small gVisor userspace stack (wireguard-go's
// tun/netstack) owns the sentinel addresses: TCP segments the applications
// send to a sentinel are written into it, and what it sends back is
// written to the Tun. Each accepted connection reads length-prefixed
// queries and hands them to the event loop, which answers them exactly like
// UDP queries (reference §1.4: the stub serves UDP and TCP).
//
// The stack is rebuilt when the set of sentinels changes (a new upstream
// list); connections open at that moment are dropped and the applications
// retry.
type clientDNSTCP struct {
	s       *clientState
	queries chan clientTCPQuery

	addrs  []netip.Addr
	dev    wgtun.Device
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// clientTCPQuery is one framed query read from a TCP connection.
type clientTCPQuery struct {
	msg    []byte
	origin clientDNSOrigin
}

// clientDNSTCPIdle bounds how long a TCP DNS connection may stay idle.
const clientDNSTCPIdle = 10 * time.Second

func newClientDNSTCP(s *clientState) *clientDNSTCP {
	return &clientDNSTCP{s: s, queries: make(chan clientTCPQuery, 64)}
}

// ensure makes the stack hold exactly sentinels.
func (t *clientDNSTCP) ensure(sentinels []netip.Addr) {
	if slices.Equal(sentinels, t.addrs) {
		return
	}
	t.close()
	t.addrs = slices.Clone(sentinels)
	if len(sentinels) == 0 {
		return
	}
	mtu := t.s.c.cfg.Tun.MTU()
	dev, tnet, err := netstack.CreateNetTUN(sentinels, nil, mtu)
	if err != nil {
		t.s.log.Warn("DNS over TCP unavailable", zap.Error(err))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.dev, t.cancel = dev, cancel
	for _, a := range sentinels {
		ln, err := tnet.ListenTCPAddrPort(netip.AddrPortFrom(a, dns.DNSPort))
		if err != nil {
			t.s.log.Warn("DNS over TCP: listening", zap.Stringer("sentinel", a), zap.Error(err))
			continue
		}
		t.wg.Add(2)
		go func() {
			defer t.wg.Done()
			<-ctx.Done()
			ln.Close()
		}()
		go t.accept(ctx, ln)
	}
	t.wg.Add(1)
	go t.output(ctx, dev)
}

// input hands a TCP segment for a sentinel to the stack.
func (t *clientDNSTCP) input(pkt []byte) {
	if t.dev == nil {
		return
	}
	_, _ = t.dev.Write([][]byte{pkt}, 0)
}

// output writes what the stack sends (SYN-ACKs, replies) to the Tun.
func (t *clientDNSTCP) output(ctx context.Context, dev wgtun.Device) {
	defer t.wg.Done()
	bs := dev.BatchSize()
	bufs := make([][]byte, bs)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, bs)
	out := make([][]byte, 0, bs)
	for {
		n, err := dev.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		out = out[:0]
		for i := 0; i < n; i++ {
			if sizes[i] > 0 {
				out = append(out, bufs[i][:sizes[i]])
			}
		}
		if len(out) == 0 {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, clientInjectTimeout)
		_, _ = t.s.c.pipe.InjectToTun(wctx, out, 0)
		cancel()
	}
}

func (t *clientDNSTCP) accept(ctx context.Context, ln net.Listener) {
	defer t.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.wg.Add(1)
		go t.serve(ctx, c)
	}
}

// serve reads framed queries from one connection, one at a time, and
// writes the replies the event loop produces.
func (t *clientDNSTCP) serve(ctx context.Context, c net.Conn) {
	defer t.wg.Done()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	app := clientAddrPort(c.RemoteAddr())
	sentinel := clientAddrPort(c.LocalAddr())
	reply := make(chan []byte, 1)
	var hdr [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(clientDNSTCPIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		msg := make([]byte, 2+n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[2:]); err != nil {
			return
		}
		q := clientTCPQuery{msg: msg, origin: clientDNSOrigin{app: app, sentinel: sentinel, tcp: reply}}
		select {
		case t.queries <- q:
		case <-ctx.Done():
			return
		}
		var resp []byte
		select {
		case resp = <-reply:
		case <-ctx.Done():
			return
		case <-time.After(dns.DefaultForwardTimeout + time.Second):
			return
		}
		framed, err := dns.AppendTCPFrame(nil, resp)
		if err != nil {
			return
		}
		if _, err := c.Write(framed); err != nil {
			return
		}
	}
}

func clientAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// close tears the stack down and waits for its goroutines.
func (t *clientDNSTCP) close() {
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
	if t.dev != nil {
		t.dev.Close()
		t.dev = nil
	}
	t.wg.Wait()
	t.addrs = nil
}
