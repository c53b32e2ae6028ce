package connlib

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// gwUpstreamReload is how often the gateway re-reads the system
// nameservers (reference §3: "re-evaluated every 60 s").
const gwUpstreamReload = 60 * time.Second

// gwUpstreamAttempt bounds one forwarding attempt; a query tries at most
// gwUpstreamTries nameservers, so a dead first choice costs one attempt,
// not the client's whole retry budget.
const (
	gwUpstreamAttempt = 2 * time.Second
	gwUpstreamTries   = 2
)

// gwUpstreams picks the system nameserver the gateway's :53535 server
// forwards to: the fastest one answering, measured on real queries.
//
// Every server starts unmeasured (round-trip 0), so each is tried and
// measured before one is preferred; a failure counts as a round trip of
// gwUpstreamAttempt. Round trips are smoothed (1/8 weight per sample, like
// TCP's SRTT) and ties keep resolv.conf's order. The list is re-read every
// gwUpstreamReload; measurements of servers still listed are kept.
//
// Safe for concurrent use.
type gwUpstreams struct {
	load func() []string // host:port of each nameserver, in preference order
	now  func() time.Time

	mu       sync.Mutex
	loadedAt time.Time
	servers  []string
	srtt     map[string]time.Duration
}

func newGwUpstreams(load func() []string, now func() time.Time) *gwUpstreams {
	if now == nil {
		now = time.Now
	}
	return &gwUpstreams{load: load, now: now, srtt: make(map[string]time.Duration)}
}

// order returns the nameservers, fastest first, re-reading the list when it
// is older than gwUpstreamReload.
func (u *gwUpstreams) order() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if now := u.now(); u.loadedAt.IsZero() || now.Sub(u.loadedAt) >= gwUpstreamReload {
		u.loadedAt = now
		u.servers = u.load()
		for s := range u.srtt {
			if !slices.Contains(u.servers, s) {
				delete(u.srtt, s)
			}
		}
	}
	out := slices.Clone(u.servers)
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(u.srtt[a], u.srtt[b]) })
	return out
}

// report records one forwarding attempt to server.
func (u *gwUpstreams) report(server string, rtt time.Duration, ok bool) {
	if !ok || rtt > gwUpstreamAttempt {
		rtt = gwUpstreamAttempt
	}
	if rtt <= 0 {
		rtt = time.Microsecond // measured: no longer ahead of unmeasured servers
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !slices.Contains(u.servers, server) {
		return // dropped by a reload meanwhile
	}
	if old, seen := u.srtt[server]; seen {
		rtt = old - old/8 + rtt/8
	}
	u.srtt[server] = rtt
}

// resolvConfServers reads the nameservers of a resolv.conf file as
// host:port (port 53, the file's port option aside); none on error.
func resolvConfServers(path string) func() []string {
	return func() []string {
		cc, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			return nil
		}
		port := cc.Port
		if port == "" {
			port = strconv.Itoa(53)
		}
		out := make([]string, 0, len(cc.Servers))
		for _, s := range cc.Servers {
			out = append(out, net.JoinHostPort(s, port))
		}
		return out
	}
}
