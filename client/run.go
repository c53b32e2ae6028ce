package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib"
	"github.com/gozone/gozone/internal/cli"
	"github.com/gozone/gozone/internal/linuxnet"
	"github.com/gozone/gozone/tun"
)

// runClient does everything after flag parsing. The returned error is the
// one line printed before exiting 1.
func runClient(c config, stderr io.Writer) error {
	token, err := cli.ClientToken(c.tokenPath)
	if err != nil {
		return err
	}
	id := c.id
	if id == "" {
		if id, err = cli.LoadOrCreateClientID(cli.DefaultClientIDPath); err != nil {
			return err
		}
	}
	w, closeLog, err := openLogger(c, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	log, err := cli.NewLogger(c.logFormat, c.logLevel, w)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if c.check {
		log.Info("configuration is valid")
		return nil
	}
	exe, _ := os.Executable()
	if err := cli.CheckNetAdmin(exe); err != nil {
		return err
	}

	dnsCtl, err := linuxnet.NewDNSController(c.dnsControl, c.tunName, c.resolvConf)
	if err != nil {
		return err
	}
	// Read the system resolvers before touching the DNS configuration; a
	// backup left by a killed run holds the real ones.
	if rc, ok := dnsCtl.(*linuxnet.ResolvConf); ok {
		if err := rc.RestoreStale(); err != nil {
			return err
		}
	}
	system, err := linuxnet.ResolvConfNameservers(c.resolvConf)
	if err != nil {
		log.Warn("reading the system resolvers", zap.Error(err))
	}

	dev, err := tun.CreateLinux(tun.LinuxConfig{Name: c.tunName, Queues: 1}, log.Named("tun"))
	if err != nil {
		return fmt.Errorf("creating the TUN device %s: %w", c.tunName, err)
	}
	osl := &clientOS{tun: dev, dns: dnsCtl, log: log}
	defer osl.restore()
	if c.activateInternet {
		// Record the physical default routes before the tunnel takes the
		// default, and keep the portal reachable outside it.
		if osl.bypass, err = linuxnet.NewBypass(); err != nil {
			return err
		}
		osl.portalIPs = portalAddrs(c.apiURL, log)
		if err := osl.bypass.Set(osl.portalIPs); err != nil {
			return err
		}
	}

	sess, err := connlib.NewClient(connlib.ClientConfig{
		Tun: dev, APIURL: c.apiURL, Token: token, FirezoneID: id, Name: c.name,
		Logger: log, OS: osl, ActivateInternetResource: c.activateInternet,
		SystemResolvers: system, MaxPartitionTime: c.maxPartition,
	})
	if err != nil {
		dev.Close()
		return err
	}
	ctx, stop := cli.SignalContext(context.Background())
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	// Network changes reset the tunnel like SIGHUP (reference §2.7).
	var netChange <-chan struct{}
	if w, err := linuxnet.WatchNetwork(c.tunName, 0); err != nil {
		log.Warn("not watching for network changes", zap.Error(err))
	} else {
		defer w.Close()
		netChange = w.C
	}

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	done := make(chan error, 1)
	go func() { done <- sess.Run(runCtx) }()
	log.Info("gozone client started", zap.String("tun", c.tunName), zap.String("api_url", c.apiURL), zap.String("dns_control", c.dnsControl))
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: resetting the tunnel")
			sess.Reset("SIGHUP")
		case <-netChange:
			log.Info("network changed: resetting the tunnel")
			sess.Reset("network change")
		case <-usr1:
			logStatus(log, sess.Status())
		case <-sess.Ready():
			if c.exit {
				log.Info("tunnel is up; exiting (--exit)")
				cancelRun()
				err := <-done
				return describe(err)
			}
			log.Info("tunnel is up")
			return waitRun(ctx, hup, usr1, netChange, sess, done, log)
		case err := <-done:
			return describe(err)
		}
	}
}

// waitRun waits for the session to end, resetting on SIGHUP and network
// changes.
func waitRun(ctx context.Context, hup, usr1 chan os.Signal, netChange <-chan struct{}, sess *connlib.Client, done chan error, log *zap.Logger) error {
	for {
		select {
		case <-usr1:
			logStatus(log, sess.Status())
		case <-hup:
			log.Info("SIGHUP: resetting the tunnel")
			sess.Reset("SIGHUP")
		case <-netChange:
			log.Info("network changed: resetting the tunnel")
			sess.Reset("network change")
		case err := <-done:
			if ctx.Err() != nil {
				log.Info("shutting down")
			}
			return describe(err)
		}
	}
}

// logStatus writes the session status (SIGUSR1): resources, the gateway
// each uses, and per gateway the path and bytes.
func logStatus(log *zap.Logger, st connlib.ClientStatus) {
	log.Info("status", zap.Bool("portal_connected", st.PortalConnected), zap.Stringer("ipv4", st.IPv4), zap.Stringer("ipv6", st.IPv6),
		zap.Int("resources", len(st.Resources)), zap.Int("gateways", len(st.Gateways)), zap.Uint64("buffer_dropped", st.BufferedDropped))
	for _, r := range st.Resources {
		log.Info("status: resource", zap.String("name", r.Name), zap.String("type", r.Type), zap.String("address", r.Address),
			zap.String("gateway", r.GatewayID), zap.Bool("connected", r.Connected), zap.String("failure", r.Failure))
	}
	for _, g := range st.Gateways {
		log.Info("status: gateway", zap.String("gateway", g.ID), zap.String("site", g.SiteID), zap.Bool("connected", g.Connected),
			zap.Stringer("path", g.Path), zap.Uint64("rx_bytes", g.RxBytes), zap.Uint64("tx_bytes", g.TxBytes))
	}
}

// describe turns the session's fatal errors into the line printed on exit.
func describe(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, connlib.ErrClientTokenRejected):
		return errors.New("the portal rejected the token; sign in again or get a new token")
	case errors.Is(err, connlib.ErrClientLogin):
		return fmt.Errorf("the portal refused the sign-in: %w", err)
	case errors.Is(err, connlib.ErrClientPortalUnreachable):
		return fmt.Errorf("could not reach the portal: %w", err)
	}
	return err
}

// clientOS applies the session's interface, route and DNS settings to the
// Linux TUN device and the system resolver, and undoes the DNS part on exit
// (addresses and routes disappear with the device).
type clientOS struct {
	tun *tun.LinuxTun
	dns linuxnet.DNSController
	log *zap.Logger
	// With the internet resource: host routes that keep the portal,
	// relays and gateways on the physical network.
	bypass    *linuxnet.Bypass
	portalIPs []netip.Addr
}

var (
	_ connlib.ClientOS       = (*clientOS)(nil)
	_ connlib.ClientBypasser = (*clientOS)(nil)
)

// SetBypass installs host routes around the tunnel for addrs and the
// portal.
func (o *clientOS) SetBypass(_ context.Context, addrs []netip.Addr) error {
	if o.bypass == nil {
		return nil
	}
	// The portal's routes stay whatever the session says: they were put
	// in place before the tunnel came up and are harmless without the
	// internet resource (they follow the physical default route).
	return o.bypass.Set(append(append([]netip.Addr(nil), addrs...), o.portalIPs...))
}

// portalAddrs resolves the portal's host (before the tunnel is up).
func portalAddrs(apiURL string, log *zap.Logger) []netip.Addr {
	u, err := url.Parse(apiURL)
	if err != nil {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		log.Warn("resolving the portal for the internet resource bypass", zap.Error(err))
	}
	return addrs
}

// splitDefault replaces a default route by its two halves, which take
// precedence over the physical default route without replacing it (so it
// stays there for the bypass routes and comes back untouched on exit).
func splitDefault(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		switch {
		case p.Bits() == 0 && p.Addr().Is4():
			out = append(out, netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1"))
		case p.Bits() == 0:
			out = append(out, netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1"))
		default:
			out = append(out, p)
		}
	}
	return out
}

func (o *clientOS) SetInterface(_ context.Context, cfg connlib.ClientInterface) error {
	var addrs []netip.Prefix
	if cfg.IPv4.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(cfg.IPv4, 32))
	}
	if cfg.IPv6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(cfg.IPv6, 128))
	}
	if err := linuxnet.SetAddrs(o.tun.Name(), addrs); err != nil {
		return err
	}
	if len(cfg.DNS) == 0 {
		return nil
	}
	return o.dns.Set(cfg.DNS, cfg.SearchDomain)
}

func (o *clientOS) UpdateRoutes(_ context.Context, added, removed []netip.Prefix) error {
	added, removed = splitDefault(added), splitDefault(removed)
	var errs []error
	for _, p := range removed {
		if err := o.tun.RemoveRoute(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range added {
		if err := o.tun.AddRoute(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *clientOS) restore() {
	if o.bypass != nil {
		if err := o.bypass.Close(); err != nil {
			o.log.Error("removing bypass routes", zap.Error(err))
		}
	}
	if err := o.dns.Restore(); err != nil {
		o.log.Error("restoring the DNS configuration", zap.Error(err))
	}
	o.tun.Close() // idempotent; removes addresses and routes with the device
}
