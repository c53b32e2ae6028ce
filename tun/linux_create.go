//go:build linux

package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// CreateLinux creates the TUN interface cfg.Name in the calling thread's
// network namespace with cfg.Queues queues, sets MTU, txqueuelen,
// addresses, brings it up and installs cfg.Routes. It refuses (with an
// error wrapping ErrDeviceExists) to use an interface that already exists.
// The device, its addresses and routes disappear on Close.
//
// Everything namespace-bound (the queue fds, the netlink handle used later
// by AddRoute, RemoveRoute and Close) is created during this call, so a
// test may call it inside netns.NS.Do and use the device from anywhere.
// logger may be nil.
func CreateLinux(cfg LinuxConfig, logger *zap.Logger) (*LinuxTun, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("tun: netlink: %w", err)
	}
	if _, err := nl.LinkByName(cfg.Name); err == nil {
		nl.Close()
		return nil, fmt.Errorf("%w: %q (another process may hold it)", ErrDeviceExists, cfg.Name)
	} else if !errors.As(err, &netlink.LinkNotFoundError{}) {
		nl.Close()
		return nil, fmt.Errorf("tun: look up %q: %w", cfg.Name, err)
	}
	if err := ensureCloneDevice(); err != nil {
		nl.Close()
		return nil, err
	}

	t := &LinuxTun{
		name:     cfg.Name,
		mtu:      cfg.MTU,
		offloads: !cfg.DisableOffloads,
		log:      logger.With(zap.String("tun", cfg.Name)),
		ready:    make(chan *rxBatch, cfg.Queues*batchesPerQueue),
		recvTok:  make(chan struct{}, 1),
		scratch:  make(chan *sendScratch, maxConcurrentSends),
		nl:       nl,
		closed:   make(chan struct{}),
	}
	fail := func(err error) (*LinuxTun, error) {
		for _, q := range t.queues {
			q.dev.Close()
		}
		nl.Close()
		return nil, err
	}
	for i := range cfg.Queues {
		fd, err := openQueueFD(cfg.Name, i == 0, cfg.Queues > 1, t.offloads)
		if err != nil {
			return fail(err)
		}
		if i == 0 && cfg.Queues > 1 {
			if err := attachSteering(fd); err != nil {
				// Still correct for flows that only ever go one way or
				// start with our write; others may be reordered once, when
				// the kernel moves them (see linux_steering.go).
				t.log.Warn("no flow-steering program; the kernel may move a flow between queues", zap.Error(err))
			} else {
				t.steering = true
			}
		}
		q, err := newLinuxQueue(t, i, fd)
		if err != nil {
			return fail(err)
		}
		t.queues = append(t.queues, q)
	}
	if err := t.configure(cfg); err != nil {
		return fail(err)
	}
	for _, q := range t.queues {
		t.readers.Add(2)
		go q.readLoop()
		go q.writeWorker()
	}
	t.log.Info("TUN device up",
		zap.Int("queues", cfg.Queues), zap.Int("mtu", cfg.MTU), zap.Bool("offloads", t.offloads), zap.Bool("steering", t.steering))
	return t, nil
}

// configure sets the link's attributes, addresses and routes.
func (t *LinuxTun) configure(cfg LinuxConfig) error {
	link, err := t.nl.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("tun: look up created %q: %w", cfg.Name, err)
	}
	t.ifindex = link.Attrs().Index
	if err := t.nl.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("tun: set MTU %d on %q: %w", cfg.MTU, cfg.Name, err)
	}
	if err := t.nl.LinkSetTxQLen(link, cfg.TxQueueLen); err != nil {
		return fmt.Errorf("tun: set txqueuelen on %q: %w", cfg.Name, err)
	}
	// No IPv6 link-local address: it only makes the kernel send router
	// solicitations and MLD reports into the tunnel. Kernels without IPv6
	// refuse this; that is fine.
	if err := t.nl.LinkSetIP6AddrGenMode(link, in6AddrGenModeNone); err != nil {
		t.log.Debug("cannot disable IPv6 link-local address generation", zap.Error(err))
	}
	for _, p := range cfg.Addrs {
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := t.nl.AddrAdd(link, a); err != nil {
			return fmt.Errorf("tun: add address %s to %q: %w", p, cfg.Name, err)
		}
	}
	if err := t.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun: set %q up: %w", cfg.Name, err)
	}
	for _, p := range cfg.Routes {
		if err := t.AddRoute(p); err != nil {
			return err
		}
	}
	t.waitLocalAddrs(cfg.Addrs)
	return nil
}

// waitLocalAddrs waits (bounded) until the kernel accepts packets for every
// address: IPv6 addresses become local asynchronously, from a work queue,
// after the link goes up, even with NODAD. A packet written for such an
// address before that is dropped (Ip6InAddrErrors), so returning from
// CreateLinux earlier would lose the first packets.
func (t *LinuxTun) waitLocalAddrs(addrs []netip.Prefix) {
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range addrs {
		for {
			rs, err := t.nl.RouteGet(net.IP(p.Addr().AsSlice()))
			if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
				break
			}
			if time.Now().After(deadline) {
				t.log.Warn("address not usable yet", zap.Stringer("addr", p), zap.Error(err))
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func (t *LinuxTun) route(p netip.Prefix) *netlink.Route {
	p = p.Masked()
	return &netlink.Route{
		LinkIndex: t.ifindex,
		Scope:     netlink.SCOPE_LINK,
		Dst:       &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
	}
}

// AddRoute routes p into the device (main table, link scope). Adding a
// route that exists is not an error.
func (t *LinuxTun) AddRoute(p netip.Prefix) error {
	t.nlMu.Lock()
	defer t.nlMu.Unlock()
	if t.isClosed() {
		return ErrClosed
	}
	if err := t.nl.RouteReplace(t.route(p)); err != nil {
		return fmt.Errorf("tun: add route %s dev %q: %w", p, t.name, err)
	}
	return nil
}

// RemoveRoute removes a route to p through the device. Removing a route
// that does not exist is not an error.
func (t *LinuxTun) RemoveRoute(p netip.Prefix) error {
	t.nlMu.Lock()
	defer t.nlMu.Unlock()
	if t.isClosed() {
		return ErrClosed
	}
	if err := t.nl.RouteDel(t.route(p)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("tun: remove route %s dev %q: %w", p, t.name, err)
	}
	return nil
}

// Close implements connlib.Tun: it unblocks every pending call, stops the
// queue goroutines and closes the queue fds, which makes the kernel delete
// the interface with its addresses and routes. Idempotent.
func (t *LinuxTun) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.closed)
		for _, q := range t.queues {
			err = errors.Join(err, q.dev.Close())
		}
		t.readers.Wait()
		t.nlMu.Lock()
		t.nl.Close()
		t.nlMu.Unlock()
		st := t.Stats()
		t.log.Info("TUN device closed",
			zap.Uint64("rx_packets", st.RxPackets), zap.Uint64("tx_packets", st.TxPackets),
			zap.Uint64("rx_malformed", st.RxMalformed), zap.Uint64("rx_too_big", st.RxTooBig),
			zap.Uint64("tx_dropped", st.TxDropped))
	})
	return err
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE from linux/if_link.h.
const in6AddrGenModeNone = 1
