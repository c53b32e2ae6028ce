// Command bench measures gozone's data path against raw wireguard-go and
// the bare veth underlay, in network namespaces it creates itself
// (internal/topo: client behind a NAT router, gateway, resource network,
// relay and portal on an "internet" bridge). iperf3 generates the traffic:
// TCP single stream, reverse, 4 streams, and UDP at a fixed rate for loss.
//
// Our machines are shared and CPU steal moves absolute figures a lot, so
// the compared paths run alternately (A B A B …, --rounds pairs), ratios
// against raw wireguard-go are medians of same-round ratios, and the steal
// seen during every run is printed next to its figure. CPU seconds per GB
// are read from /proc/<pid>/stat of each tunnel process.
//
// Usage (root, Linux, iperf3 installed, from the gozone checkout):
//
//	go run ./examples/bench            # full mode, under 5 minutes
//	go run ./examples/bench --short    # each path briefly; exit 1 if one carries nothing
//	go run ./examples/bench --json     # one JSON object with every figure
//	go run ./examples/bench --paths wireguard-go,gozone-relayed --setup=false
//	go run ./examples/bench --profile DIR   # CPU profiles of gozone's processes (profile.go)
//	go run ./examples/bench --table FILE    # the table of a report saved with --json
//
// gozone's own paths (direct with 1 and 2 gateway TUN queues, relayed, each
// with the development portal and its TURN relay; see gozone.go) are built
// and measured when gateway/ and client/ exist, and appear as "not
// available yet" before that; no figure is ever made up. A gozone path that
// exists but does not come up, or takes the wrong route (relayed vs direct,
// checked from the relay host's byte counter), is a problem: exit 1.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	short := flag.Bool("short", false, "run each path briefly and only check that it carries traffic")
	asJSON := flag.Bool("json", false, "print one JSON object instead of the table")
	dur := flag.Duration("duration", 0, "length of each iperf3 run (default 3s, 1s with --short)")
	rounds := flag.Int("rounds", 0, "alternating rounds per test (default 3, 1 with --short)")
	udpRate := flag.String("udp-rate", "100M", "iperf3 -b for the UDP loss test")
	mtu := flag.Int("mtu", 1280, "raw wireguard-go tunnel MTU (gozone's is 1280)")
	wgBin := flag.String("wireguard-go", "", "prebuilt wireguard-go binary (default: build golang.zx2c4.com/wireguard from go.mod)")
	paths := flag.String("paths", "", "comma-separated paths to run, e.g. gozone-direct-q1,gozone-relayed (default: all: "+strings.Join(allPathNames(), ", ")+"); ratios need wireguard-go")
	profile := flag.String("profile", "", "write CPU profiles of every gozone gateway and client during the throughput runs to DIR/<path>-{gateway,client}.pprof")
	setupN := flag.Int("setup-probes", 0, "connection set-up probes (default 20, 3 with --short)")
	setupTimeout := flag.Duration("setup-timeout", 0, "give up on one gozone set-up probe after this long (default 20s)")
	setup := flag.Bool("setup", true, "run the connection set-up probes (--setup=false skips them)")
	table := flag.String("table", "", "print the table of a report saved with --json from FILE, and exit")
	flag.Parse()
	if *table != "" {
		os.Exit(printSaved(*table))
	}

	cfg := defaultConfig(*short)
	if *dur > 0 {
		cfg.Duration = *dur
	}
	if *rounds > 0 {
		cfg.Rounds = *rounds
	}
	cfg.UDPRate, cfg.MTU, cfg.WGBin = *udpRate, *mtu, *wgBin
	var err error
	if cfg.Paths, err = parsePaths(*paths); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	cfg.SkipSetup = !*setup
	if *setupN > 0 {
		cfg.SetupN = *setupN
	}
	if *setupTimeout > 0 {
		cfg.SetupTimeout = *setupTimeout
	}
	if *profile != "" {
		if cfg.ProfileDir, err = filepath.Abs(*profile); err == nil {
			err = os.MkdirAll(cfg.ProfileDir, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: --profile: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(mainRun(cfg, *asJSON))
}

func mainRun(cfg config, asJSON bool) (code int) {
	r := newRunner()
	defer r.close() // after the recover below: cleanups run on every exit path
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted, cleaning up")
		r.cancel()
	}()
	defer func() {
		if p := recover(); p != nil {
			if p != errFatal { //nolint:errorlint // sentinel panic value
				panic(p)
			}
			code = 1
		}
	}()
	rep, err := run(r, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		if errors.Is(err, errNoIperf) || rep == nil {
			return 1
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
	} else {
		printTable(os.Stdout, rep)
	}
	if err != nil || len(rep.Problems) > 0 || r.Failed() {
		return 1
	}
	return 0
}

// printSaved prints the table of a report saved with --json.
func printSaved(file string) int {
	b, err := os.ReadFile(file)
	var rep report
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: --table: %v\n", err)
		return 1
	}
	printTable(os.Stdout, &rep)
	return 0
}
