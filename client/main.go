// Command client is gozone's headless Linux client: it creates the TUN
// device, signs in to the portal with a token, configures addresses, routes
// and DNS, and runs a connlib client session until SIGINT or SIGTERM.
// SIGHUP resets the tunnel (new key, connections re-established on demand).
//
// Flags and environment follow Firezone's headless client (reference §6.2).
// Exit status: 0 after an orderly shutdown (or --exit once the tunnel is
// up, --check once the configuration is valid), 1 on any fatal error, with
// one line saying why on stderr. GOZONE_CPU_PROFILE=FILE writes a pprof CPU
// profile (internal/cli).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/internal/cli"
	"github.com/gozone/gozone/internal/linuxnet"
)

// config is everything the flags and environment say.
type config struct {
	apiURL           string
	dnsControl       string
	logDir           string
	logFormat        string
	logLevel         string
	maxPartition     time.Duration
	check, exit      bool
	name             string
	id               string
	activateInternet bool
	tokenPath        string
	tunName          string
	resolvConf       string
}

const defaultTunName = "tun-firezone"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without os.Exit, for tests.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "\n"+cli.CPUProfileHelp)
		return 0
	}
	if err == nil {
		// Debugging aid (cli.CPUProfileHelp): stopped, and so flushed, on
		// every return, the orderly SIGINT/SIGTERM shutdown included.
		var prof *cli.CPUProfile
		if prof, err = cli.StartCPUProfileFromEnv(nil); err == nil {
			err = runClient(cfg, stderr)
			if perr := prof.Stop(); perr != nil {
				fmt.Fprintf(stderr, "gozone-client: writing the CPU profile: %v\n", perr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "gozone-client: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("gozone-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxPart, err := cli.EnvDuration("MAX_PARTITION_TIME", 0)
	if err != nil {
		return c, fmt.Errorf("MAX_PARTITION_TIME: %w", err)
	}
	internet, err := cli.EnvBool("FIREZONE_ACTIVATE_INTERNET_RESOURCE", false)
	if err != nil {
		return c, fmt.Errorf("FIREZONE_ACTIVATE_INTERNET_RESOURCE: %w", err)
	}
	str := func(p *string, long, short, env, def, usage string) {
		d := def
		if env != "" {
			d = cli.EnvString(env, def)
		}
		fs.StringVar(p, long, d, usage)
		if short != "" {
			fs.StringVar(p, short, d, "shorthand for --"+long)
		}
	}
	str(&c.apiURL, "api-url", "u", "FIREZONE_API_URL", portal.DefaultAPIURL, "portal API URL")
	str(&c.dnsControl, "dns-control", "", "FIREZONE_DNS_CONTROL", linuxnet.DNSControlSystemdResolved, "DNS control: disabled, etc-resolv-conf or systemd-resolved")
	str(&c.logDir, "log-dir", "l", "LOG_DIR", "", "also write logs to this directory")
	str(&c.logFormat, "log-format", "", "FIREZONE_LOG_FORMAT", cli.LogFormatHuman, "log format: human or json")
	str(&c.logLevel, "log-level", "", "RUST_LOG", "info", "log level (debug, info, warn, error)")
	str(&c.name, "firezone-name", "", "FIREZONE_NAME", "", "device name shown in the portal (default: hostname)")
	str(&c.id, "firezone-id", "i", "FIREZONE_ID", "", "device id (default: persisted in "+cli.DefaultClientIDPath+")")
	str(&c.tokenPath, "token-path", "", "FIREZONE_TOKEN_PATH", cli.DefaultClientTokenPath, "file holding the token when FIREZONE_TOKEN is not set")
	str(&c.tunName, "tun-name", "", "FIREZONE_TUN_NAME", defaultTunName, "name of the TUN interface")
	str(&c.resolvConf, "resolv-conf", "", "", linuxnet.DefaultResolvConf, "resolv.conf controlled by --dns-control etc-resolv-conf")
	c.maxPartition = maxPart
	mp := (*humanDuration)(&c.maxPartition)
	fs.Var(mp, "max-partition-time", "give up when the portal stays unreachable this long, e.g. 30m, 1d (0: never)")
	fs.Var(mp, "m", "shorthand for --max-partition-time")
	fs.BoolVar(&c.check, "check", false, "validate the configuration and exit")
	fs.BoolVar(&c.exit, "exit", false, "exit 0 once the tunnel is up")
	fs.BoolVar(&c.activateInternet, "activate-internet-resource", internet, "route all traffic through the internet resource, if the portal offers one")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (subcommands are not supported; the token comes from FIREZONE_TOKEN or --token-path)", fs.Args())
	}
	switch c.dnsControl {
	case linuxnet.DNSControlDisabled, linuxnet.DNSControlEtcResolvConf, linuxnet.DNSControlSystemdResolved:
	default:
		return c, fmt.Errorf("--dns-control %q: want disabled, etc-resolv-conf or systemd-resolved", c.dnsControl)
	}
	if c.logFormat != cli.LogFormatHuman && c.logFormat != cli.LogFormatJSON {
		return c, fmt.Errorf("--log-format %q: want human or json", c.logFormat)
	}
	if len(c.tunName) == 0 || len(c.tunName) > 15 {
		return c, fmt.Errorf("--tun-name %q: 1 to 15 characters", c.tunName)
	}
	if c.name == "" {
		if h, err := os.Hostname(); err == nil {
			c.name = h
		}
	}
	return c, nil
}

// openLogger builds the logger, writing to stderr and, with --log-dir, to
// <dir>/gozone-client.log as well.
func openLogger(c config, stderr io.Writer) (logW io.Writer, closeFn func(), err error) {
	if c.logDir == "" {
		return stderr, func() {}, nil
	}
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(c.logDir, "gozone-client.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	return io.MultiWriter(stderr, f), func() { f.Close() }, nil
}

// humanDuration is a flag.Value accepting Go durations, days ("1d") and
// plain seconds, like Firezone's humantime flags.
type humanDuration time.Duration

func (d *humanDuration) String() string { return time.Duration(*d).String() }

func (d *humanDuration) Set(s string) error {
	v, err := cli.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = humanDuration(v)
	return nil
}
