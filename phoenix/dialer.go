package phoenix

import (
	"context"
	"errors"
	"net"
	"time"
)

// raceDialer connects to every resolved address of the host in parallel
// and keeps the first that answers (reference §4.1: connlib races all IPs
// of the portal, each attempt bounded by the TCP connect timeout). The host
// is resolved again on every dial, so a reconnect follows DNS changes.
type raceDialer struct {
	timeout time.Duration
	// lookup resolves a host name; nil means net.DefaultResolver.
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
}

func (d *raceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	nd := net.Dialer{Timeout: d.timeout}
	if net.ParseIP(host) != nil {
		return nd.DialContext(ctx, network, addr)
	}
	lookup := d.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupIPAddr
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	if len(ips) == 1 {
		return nd.DialContext(ctx, network, net.JoinHostPort(ips[0].String(), port))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	results := make(chan result, len(ips))
	for _, ip := range ips {
		go func(ip net.IPAddr) {
			c, err := nd.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			results <- result{c, err}
		}(ip)
	}
	var errs []error
	for n := range len(ips) {
		res := <-results
		if res.err != nil {
			errs = append(errs, res.err)
			continue
		}
		// First to connect wins; the others are cancelled and any that
		// still connect are closed in the background.
		cancel()
		if rest := len(ips) - n - 1; rest > 0 {
			go func() {
				for range rest {
					if r := <-results; r.c != nil {
						r.c.Close()
					}
				}
			}()
		}
		return res.c, nil
	}
	return nil, errors.Join(errs...)
}
