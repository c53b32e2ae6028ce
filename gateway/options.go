package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/snownet"
	"github.com/gozone/gozone/internal/cli"
)

type netipPrefix = netip.Prefix

func prefixOf(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

var errHelp = errors.New("help")

// options are the gateway's settings (reference §6.1): flag, else
// environment variable, else default.
type options struct {
	token        string
	apiURL       string
	name         string
	id           string
	idFile       string
	noCheck      bool
	healthAddr   string
	logFormat    string
	maxPartition time.Duration
	tunThreads   int
	tunName      string
	masquerade   bool
	listenPort   uint16
	recvBuf      int
	sendBuf      int
	noIncBuf     bool
	userspace    bool
	redirects    redirectFlag
	hostIP       netip.Addr
}

// redirectFlag collects --userspace-map FROM=TO pairs: in userspace mode a
// flow a client opens to FROM is dialled to TO on the gateway's host (ports
// kept). It is how a service on the host's loopback, which a network stack
// never accepts from outside, is published under a normal address.
type redirectFlag map[netip.Addr]netip.Addr

func (r *redirectFlag) String() string { return fmt.Sprint(map[netip.Addr]netip.Addr(*r)) }

func (r *redirectFlag) Set(v string) error {
	from, to, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want FROM=TO (two IP addresses), got %q", v)
	}
	f, err := netip.ParseAddr(strings.TrimSpace(from))
	if err != nil {
		return fmt.Errorf("FROM: %v", err)
	}
	t, err := netip.ParseAddr(strings.TrimSpace(to))
	if err != nil {
		return fmt.Errorf("TO: %v", err)
	}
	if f.Is4() != t.Is4() {
		return fmt.Errorf("%v=%v: both addresses must be of the same family", f, t)
	}
	if *r == nil {
		*r = redirectFlag{}
	}
	(*r)[f.Unmap()] = t.Unmap()
	return nil
}

func parseOptions(args []string, out io.Writer) (*options, error) {
	o := &options{}
	var errs []error
	must := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	host, _ := os.Hostname()
	maxPart, err := cli.EnvDuration("FIREZONE_MAX_PARTITION_TIME", 24*time.Hour)
	must(err)
	threads, err := cli.EnvInt("FIREZONE_NUM_TUN_THREADS", 2)
	must(err)
	recv, err := cli.EnvInt("FIREZONE_UDP_RECV_BUFFER_SIZE", snownet.DefaultRecvBufferSize)
	must(err)
	send, err := cli.EnvInt("FIREZONE_UDP_SEND_BUFFER_SIZE", snownet.DefaultSendBufferSize)
	must(err)
	noIncBuf, err := cli.EnvBool("FIREZONE_NO_INC_BUF", false)
	must(err)
	masq, err := cli.EnvBool("FIREZONE_MASQUERADE", false)
	must(err)
	port, err := cli.EnvInt("FIREZONE_LISTEN_PORT", 0)
	must(err)
	userspace, err := cli.EnvBool("FIREZONE_USERSPACE", false)
	must(err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	str := func(p *string, names []string, def, usage string) {
		for _, n := range names {
			fs.StringVar(p, n, def, usage)
		}
	}
	str(&o.apiURL, []string{"api-url", "u"}, cli.EnvString("FIREZONE_API_URL", portal.DefaultAPIURL), "portal API URL (FIREZONE_API_URL)")
	str(&o.name, []string{"firezone-name", "n"}, cli.EnvString("FIREZONE_NAME", host), "gateway name shown in the portal (FIREZONE_NAME)")
	str(&o.id, []string{"firezone-id", "i"}, cli.EnvString("FIREZONE_ID", ""), "gateway id (FIREZONE_ID; default: generated and kept in --id-file)")
	str(&o.idFile, []string{"id-file"}, cli.EnvString("FIREZONE_ID_FILE", cli.DefaultGatewayIDPath), "state file for the generated id")
	str(&o.healthAddr, []string{"health-check-addr"}, cli.EnvString("HEALTH_CHECK_ADDR", "0.0.0.0:8080"), "health check address, /healthz and /readyz (HEALTH_CHECK_ADDR; empty disables)")
	str(&o.logFormat, []string{"log-format"}, cli.EnvString("FIREZONE_LOG_FORMAT", cli.LogFormatHuman), "log format: human or json (FIREZONE_LOG_FORMAT); level from RUST_LOG")
	str(&o.tunName, []string{"tun-name"}, cli.EnvString("FIREZONE_TUN_NAME", "tun-firezone"), "TUN device name (FIREZONE_TUN_NAME)")
	fs.BoolVar(&o.noCheck, "no-check", false, "skip the root/CAP_NET_ADMIN check")
	for _, n := range []string{"max-partition-time", "m"} {
		fs.DurationVar(&o.maxPartition, n, maxPart, "give up after the portal is unreachable this long (FIREZONE_MAX_PARTITION_TIME)")
	}
	fs.IntVar(&o.tunThreads, "tun-threads", threads, "TUN queues (FIREZONE_NUM_TUN_THREADS)")
	fs.BoolVar(&o.masquerade, "masquerade", masq, "install nftables forwarding and masquerade rules for the tunnel ranges, removed on exit (FIREZONE_MASQUERADE)")
	var listenPort int
	fs.IntVar(&listenPort, "listen-port", port, "UDP port for WireGuard/ICE (FIREZONE_LISTEN_PORT; 0: random)")
	fs.BoolVar(&o.noIncBuf, "no-inc-buf", noIncBuf, "do not raise net.core.{r,w}mem_max (FIREZONE_NO_INC_BUF)")
	fs.BoolVar(&o.userspace, "userspace", userspace, "run without root or a TUN device: a userspace network stack (gVisor) forwards clients' TCP, UDP and ICMP echo to real sockets on this host, with the same access control (FIREZONE_USERSPACE). ICMP needs net.ipv4.ping_group_range to include the gateway's group, or CAP_NET_RAW")
	fs.Var(&o.redirects, "userspace-map", "with --userspace, FROM=TO: dial flows to address FROM at address TO instead (e.g. 10.99.0.10=127.0.0.1 publishes a loopback service); repeatable")
	hostIP := cli.EnvString("FIREZONE_HOST_IP", "")
	fs.StringVar(&hostIP, "host-ip", hostIP, "offer host ICE candidates for this address only (FIREZONE_HOST_IP; default: every interface address), e.g. 127.0.0.1 when portal, relay and client run on this machine")
	var ignored bool
	fs.BoolVar(&ignored, "no-telemetry", false, "accepted for compatibility; gozone sends no telemetry")
	fs.BoolVar(&ignored, "flow-logs", false, "accepted for compatibility; flow logs are not implemented")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: gateway [flags] [TOKEN]\n\nThe token may also come from FIREZONE_TOKEN or $CREDENTIALS_DIRECTORY/FIREZONE_TOKEN.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	switch fs.NArg() {
	case 0:
	case 1:
		o.token = fs.Arg(0)
	default:
		return nil, fmt.Errorf("unexpected arguments after the token: %q", fs.Args()[1:])
	}
	if o.tunThreads < 1 || o.tunThreads > 16 {
		return nil, fmt.Errorf("--tun-threads %d: must be 1..16", o.tunThreads)
	}
	if hostIP != "" {
		a, err := netip.ParseAddr(hostIP)
		if err != nil {
			return nil, fmt.Errorf("--host-ip: %v", err)
		}
		o.hostIP = a
	}
	if len(o.redirects) > 0 && !o.userspace {
		return nil, errors.New("--userspace-map needs --userspace")
	}
	if o.userspace && o.masquerade {
		return nil, errors.New("--masquerade and --userspace exclude each other: a userspace gateway opens host sockets and needs no forwarding rules")
	}
	if listenPort < 0 || listenPort > 65535 {
		return nil, fmt.Errorf("--listen-port %d: out of range", listenPort)
	}
	o.listenPort = uint16(listenPort)
	o.recvBuf, o.sendBuf = recv, send
	return o, nil
}

// lookup is the Redirect function of the userspace gateway.
func (r redirectFlag) lookup(a netip.Addr) netip.Addr {
	if to, ok := r[a.Unmap()]; ok {
		return to
	}
	return a
}
