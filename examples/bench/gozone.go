package main

import (
	"os"
	"path/filepath"
)

// gozone's own paths. They need the gateway and client binaries (gateway/,
// client/ at the repository root) and the development portal; until those
// are wired in here they are reported as not available, never with
// made-up figures.
//
// TODO(lead): when gateway/ and client/ exist, build them, run the portal
// (examples/portal/cmd/portal, with its built-in TURN relay) in
// tp.Portal, the gateway in tp.Gateway (--tun-threads 1 and 2), the client
// in tp.Client, and return benchPaths whose from/to are tp.Client and
// tp.Resource.IPv4 and whose procs are the gateway and client pids:
//   - gozone-direct-q1 / -q2: a topology with ClientNAT endpoint-independent
//     (hole punching works);
//   - gozone-relayed: ClientNAT symmetric, GatewayNAT endpoint-independent
//     (only the relay works; assert the client's status says "relayed").
//   - set-up time: first packet to the resource until its reply, 20 times,
//     on a fresh connection each time (restart the client, or sign out).
var gozonePathNames = []struct{ name, desc string }{
	{"gozone-direct-q1", "gozone client → gateway (1 TUN queue) → resource, direct (client behind EI NAT)"},
	{"gozone-direct-q2", "gozone client → gateway (2 TUN queues) → resource, direct (client behind EI NAT)"},
	{"gozone-relayed", "gozone client (symmetric NAT) → relay → gateway (EI NAT) → resource"},
}

// gozoneAvailability says why the gozone paths cannot run yet.
func gozoneAvailability(repo string) string {
	_, errG := os.Stat(filepath.Join(repo, "gateway", "main.go"))
	_, errC := os.Stat(filepath.Join(repo, "client", "main.go"))
	if errG != nil || errC != nil {
		return "not available yet: the gateway/ and client/ binaries are not in the tree"
	}
	return "not available yet: the gateway and client binaries exist but are not wired into examples/bench"
}

// moduleRoot finds the directory holding go.mod above the working
// directory ("" when there is none).
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
