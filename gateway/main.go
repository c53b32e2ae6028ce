// Command gateway is gozone's Firezone-compatible gateway: it joins the
// portal's gateway channel, accepts the clients the portal authorizes and
// forwards their traffic to the resources they may reach (reference §6.1).
//
// It is thin: flags and environment → OS setup (TUN, optional nftables
// masquerade) → connlib.Gateway.Run. Fatal errors print one line and exit
// 1; SIGINT/SIGTERM send goodbye to every client and exit 0.
// GOZONE_CPU_PROFILE=FILE writes a pprof CPU profile (internal/cli).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib"
	"github.com/gozone/gozone/internal/cli"
	"github.com/gozone/gozone/internal/linuxnet"
	"github.com/gozone/gozone/tun"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the exit, so it can be tested.
func run(args []string, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gateway: "+format+"\n", a...)
		return 1
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			fmt.Fprintln(stderr, "\n"+cli.CPUProfileHelp)
			return 0
		}
		return fail("%v", err)
	}
	log, err := cli.NewLogger(o.logFormat, os.Getenv("RUST_LOG"), stderr)
	if err != nil {
		return fail("%v", err)
	}
	defer log.Sync() //nolint:errcheck
	// Debugging aid (cli.CPUProfileHelp); stopped, and so flushed, on every
	// return, the orderly SIGINT/SIGTERM shutdown included.
	prof, err := cli.StartCPUProfileFromEnv(log)
	if err != nil {
		return fail("%v", err)
	}
	defer prof.Stop() //nolint:errcheck // Stop logs its error
	if !o.noCheck && !o.userspace {
		exe, _ := os.Executable()
		if err := cli.CheckNetAdmin(exe); err != nil {
			return fail("%v", err)
		}
	}
	token, err := cli.Token(o.token, nil)
	if err != nil {
		return fail("%v", err)
	}
	id := o.id
	if id == "" {
		if id, err = cli.LoadOrCreateID(o.idFile); err != nil {
			return fail("firezone id: %v", err)
		}
	}
	if !o.noIncBuf && !o.userspace {
		if err := linuxnet.RaiseSocketBuffers(o.recvBuf, o.sendBuf); err != nil {
			log.Warn("could not raise the socket buffer limits", zap.Error(err))
		}
	}

	cfg := connlib.GatewayConfig{
		APIURL: o.apiURL, Token: token, FirezoneID: id, Name: o.name,
		Logger: log, MaxPartitionTime: o.maxPartition,
		Snownet: connlib.GatewaySnownet{ListenPort: o.listenPort, RecvBufferSize: o.recvBuf, SendBufferSize: o.sendBuf, HostIP: o.hostIP},
	}
	if o.userspace {
		ut, err := connlib.NewUserspaceGatewayTun(connlib.UserspaceGatewayConfig{Logger: log.Named("userspace"), Redirect: o.redirects.lookup})
		if err != nil {
			return fail("userspace network stack: %v", err)
		}
		ut.Configure(&cfg)
		log.Info("userspace mode: no TUN device; flows are forwarded to sockets on this host", zap.Int("mapped_addresses", len(o.redirects)))
	} else {
		dev, err := tun.CreateLinux(tun.LinuxConfig{Name: o.tunName, Queues: o.tunThreads, MTU: tun.DefaultMTU}, log.Named("tun"))
		if err != nil {
			return fail("creating TUN device %s: %v", o.tunName, err)
		}
		if o.masquerade {
			masq, err := linuxnet.InstallMasquerade(o.tunName)
			if err != nil {
				dev.Close()
				return fail("installing forwarding/masquerade rules: %v", err)
			}
			log.Info("forwarding and masquerade rules installed", zap.String("table", linuxnet.MasqueradeTableName(o.tunName)))
			defer func() {
				if err := masq.Remove(); err != nil {
					log.Warn("removing masquerade rules", zap.Error(err))
				}
			}()
		}
		cfg.Tun, cfg.Interface = dev, &linuxOS{name: o.tunName}
	}

	g, err := connlib.NewGateway(cfg)
	if err != nil {
		if c, ok := cfg.Tun.(interface{ Close() error }); ok {
			c.Close()
		}
		return fail("%v", err)
	}
	defer g.Close()
	if o.healthAddr != "" {
		h, err := cli.StartHealth(o.healthAddr, g.Ready)
		if err != nil {
			return fail("health check on %s: %v", o.healthAddr, err)
		}
		defer h.Close()
		log.Info("health check listening", zap.Stringer("addr", h.Addr()))
	}
	log.Info("gateway starting", zap.String("name", o.name), zap.String("tun", o.tunName),
		zap.Int("tun_threads", o.tunThreads), zap.Uint16("port", g.Port()), zap.Stringer("public_key", g.PublicKey()))

	ctx, stop := cli.SignalContext(context.Background())
	defer stop()
	err = g.Run(ctx)
	switch {
	case err == nil:
		log.Info("gateway stopped")
		return 0
	case errors.Is(err, connlib.ErrGatewayTokenRejected):
		return fail("the portal rejected the token (FIREZONE_TOKEN); create a new gateway token")
	default:
		return fail("%v", err)
	}
}

// linuxOS applies the portal's interface settings to the TUN with netlink.
type linuxOS struct{ name string }

var _ connlib.GatewayOS = (*linuxOS)(nil)

func (l *linuxOS) SetInterface(_ context.Context, s connlib.GatewayInterface) error {
	var addrs []netipPrefix
	if s.IPv4.IsValid() {
		addrs = append(addrs, prefixOf(s.IPv4))
	}
	if s.IPv6.IsValid() {
		addrs = append(addrs, prefixOf(s.IPv6))
	}
	if err := linuxnet.SetAddrs(l.name, addrs); err != nil {
		return err
	}
	for _, r := range s.Routes {
		if err := linuxnet.AddRoute(l.name, r); err != nil {
			return err
		}
	}
	return nil
}
