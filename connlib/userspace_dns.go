package connlib

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// userspaceDNSTries and userspaceDNSTimeout bound one query to one
// resolver (UDP through the tunnel may lose a datagram).
const (
	userspaceDNSTries   = 3
	userspaceDNSTimeout = 2 * time.Second
)

// LookupHost resolves host with the session's DNS: it asks the session's
// sentinel resolvers (through the stack, answered by the session itself
// for DNS resources, forwarded upstream otherwise) for A and AAAA records.
// Unlike net.Resolver it reads nothing from the host (/etc/hosts,
// resolv.conf search domains), so embedding programs get the same answers
// on every machine. IPv4 addresses come first.
func (u *UserspaceClient) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if err := u.WaitReady(ctx); err != nil {
		return nil, err
	}
	servers := u.c.Status().DNS
	if len(servers) == 0 {
		return nil, &net.DNSError{Err: "no resolvers configured by the portal", Name: host}
	}
	name := mdns.Fqdn(host)
	var out []netip.Addr
	var errs []error
	notFound := 0
	for _, qtype := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		for _, s := range servers {
			r, err := u.exchange(ctx, s, name, qtype)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if r.Rcode == mdns.RcodeNameError {
				notFound++
			}
			for _, rr := range r.Answer {
				switch rr := rr.(type) {
				case *mdns.A:
					if a, ok := netip.AddrFromSlice(rr.A); ok {
						out = append(out, a.Unmap())
					}
				case *mdns.AAAA:
					if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
						out = append(out, a)
					}
				}
			}
			break
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if notFound > 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if len(errs) > 0 {
		return nil, &net.DNSError{Err: errors.Join(errs...).Error(), Name: host, IsTemporary: true}
	}
	return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
}

// exchange sends one query over UDP through the tunnel, retrying on loss.
func (u *UserspaceClient) exchange(ctx context.Context, server netip.Addr, name string, qtype uint16) (*mdns.Msg, error) {
	c, err := u.dev.DialContext(ctx, "udp", netip.AddrPortFrom(server, 53).String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	conn := &mdns.Conn{Conn: c}
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	var lastErr error
	for try := 0; try < userspaceDNSTries; try++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_ = c.SetDeadline(time.Now().Add(userspaceDNSTimeout))
		if err := conn.WriteMsg(q); err != nil {
			return nil, err
		}
		for {
			r, err := conn.ReadMsg()
			if err != nil {
				lastErr = err
				break
			}
			if r.Id == q.Id && r.Response {
				return r, nil
			}
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, lastErr
}
