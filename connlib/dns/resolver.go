package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	mdns "github.com/miekg/dns"
	"go.uber.org/zap"
)

// TTL of every locally synthesised answer, in seconds (reference: 1 s), so
// that applications come back to the stub soon after a resource changes.
const TTL = 1

// DoHCanaryDomain is answered with NXDOMAIN so that Firefox does not switch
// to its own DNS-over-HTTPS and bypass the stub (Firezone does the same).
const DoHCanaryDomain = "use-application-dns.net"

// Action is what the caller must do with a query.
type Action uint8

const (
	// ActionDrop: the bytes are not a usable query (see the error). Count
	// and drop; no reply is possible or wanted.
	ActionDrop Action = iota
	// ActionRespond: send Result.Response back to the application.
	ActionRespond
	// ActionForwardUpstream: send Result.Query to the upstream resolver the
	// application addressed (via its sentinel), e.g. with Pending.
	ActionForwardUpstream
	// ActionForwardSite: send Result.Query through the tunnel to port
	// GatewayDNSPort on the gateway serving Result.ResourceID; the gateway
	// resolves it with its own resolvers.
	ActionForwardSite
)

// GatewayDNSPort is where gateways listen for queries about DNS resources
// forwarded by clients (on their tunnel addresses).
const GatewayDNSPort = 53535

func (a Action) String() string {
	switch a {
	case ActionRespond:
		return "respond"
	case ActionForwardUpstream:
		return "forward-upstream"
	case ActionForwardSite:
		return "forward-site"
	default:
		return "drop"
	}
}

// Result is the stub's decision for one query. Its slices alias the caller's
// buffers and are valid until they are reused.
type Result struct {
	Action Action
	// Response is the reply (TCP-framed for TransportTCP), a prefix of the
	// out buffer. Only for ActionRespond.
	Response []byte
	// Query is the DNS message without TCP framing, a sub-slice of the input.
	// Set whenever the header could be read.
	Query []byte
	// ResourceID is the resource whose site must resolve the query
	// (ActionForwardSite).
	ResourceID string
	// QType is the question's type, when there was a question.
	QType uint16
}

// Assignment binds a name to proxy IPs and to the resource that covers it.
// The client session sends it to that resource's gateway as assigned_ips.
type Assignment struct {
	Name       string // lower case, no trailing dot
	ResourceID string
	IPStack    IPStack
	IPs        ProxyIPs
}

// AppendIPs appends the proxy IPs of the assignment's stack (4 or 8).
func (a *Assignment) AppendIPs(dst []netip.Addr) []netip.Addr {
	return a.IPs.AppendForStack(dst, a.IPStack)
}

// ProxyTarget is what a proxy IP stands for.
type ProxyTarget struct {
	Name       string
	ResourceID string
	IPStack    IPStack
}

// Stats are counters, readable at any time from any goroutine.
type Stats struct {
	Queries, Answered, ForwardedUpstream, ForwardedSite, Dropped, Malformed uint64
}

// Config configures a Resolver. The zero value is usable.
type Config struct {
	Logger *zap.Logger // nil: zap.NewNop()
	// SearchDomain expands single-label queries ("gitlab" →
	// "gitlab.corp.example.com") before they are matched against resources.
	SearchDomain string
	// MaxNames bounds how many names get proxy IPs (memory bound against an
	// application asking for endless random names under a "**" resource).
	// 0: until the proxy ranges are exhausted (about 500 000 names).
	MaxNames int
}

type nameEntry struct {
	name  string
	ips   ProxyIPs
	bound bool // a resource currently covers the name
	resID string
	stack IPStack
}

// Resolver is the client's stub resolver for DNS resources, sans-IO: it
// decides what happens to each query and keeps the name ↔ proxy IP mapping.
//
// The mapping is stable for the Resolver's lifetime: a name keeps its IPs
// even when resources come and go, different names never share an IP, and
// IPs are never reused.
//
// A Resolver is safe for concurrent use: one mutex serialises its methods,
// so the packet path (LookupProxyIP, HandleQuery) and the portal handlers
// (SetResources, …) may run on different goroutines. Uncontended, the lock
// costs a few nanoseconds per call.
type Resolver struct {
	mu sync.Mutex // guards everything below except stats

	log       *zap.Logger
	resources resourceSet
	names     map[string]*nameEntry
	byIP      map[netip.Addr]*nameEntry
	alloc     proxyAllocator
	search    string
	maxNames  int
	events    []Assignment

	scratch  [maxWireName]byte // query name
	expanded [maxWireName]byte // query name + search domain

	stats struct {
		queries, answered, upstream, site, dropped, malformed atomic.Uint64
	}
}

// NewResolver returns a Resolver without resources.
func NewResolver(cfg Config) (*Resolver, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	r := &Resolver{
		log:      log,
		names:    make(map[string]*nameEntry),
		byIP:     make(map[netip.Addr]*nameEntry),
		alloc:    newProxyAllocator(ProxyRangeV4, ProxyRangeV6),
		maxNames: cfg.MaxNames,
	}
	if err := r.SetSearchDomain(cfg.SearchDomain); err != nil {
		return nil, err
	}
	return r, nil
}

// SetSearchDomain replaces the search domain ("" clears it).
func (r *Resolver) SetSearchDomain(d string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if d != "" {
		if _, ok := mdns.IsDomainName(d); !ok || len(d) > maxNameLen-2 || strings.Contains(d, "..") {
			return fmt.Errorf("dns: invalid search domain %q", d)
		}
	}
	r.search = d
	return nil
}

// SearchDomain returns the current search domain.
func (r *Resolver) SearchDomain() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.search
}

// SetResources replaces all DNS resources. Invalid ones are skipped and
// reported in the (joined) error; the valid ones take effect.
func (r *Resolver) SetResources(rs []Resource) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resources = resourceSet{}
	var errs []error
	for _, res := range rs {
		if _, _, err := r.resources.upsert(res); err != nil {
			errs = append(errs, err)
		}
	}
	for _, e := range r.names {
		r.rebind(e)
	}
	return errors.Join(errs...)
}

// UpsertResource adds a DNS resource or replaces the one with the same ID.
func (r *Resolver) UpsertResource(res Resource) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, existed, err := r.resources.upsert(res)
	if err != nil {
		return err
	}
	p := r.resources.entries[r.resources.index(res.ID)].pattern
	for _, e := range r.names {
		if (existed && e.resID == prev.id) || p.Match(e.name) {
			r.rebind(e)
		}
	}
	return nil
}

// RemoveResource removes a DNS resource. Names it covered keep their proxy
// IPs; they move to the next matching resource, if any.
func (r *Resolver) RemoveResource(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.resources.remove(id); !ok {
		return
	}
	for _, e := range r.names {
		if e.bound && e.resID == id {
			r.rebind(e)
		}
	}
}

// rebind recomputes which resource covers e and queues an Assignment when
// that (or its IP stack) changed.
func (r *Resolver) rebind(e *nameEntry) {
	res, ok := r.resources.matchString(e.name)
	if !ok {
		e.bound, e.resID = false, ""
		return
	}
	r.bind(e, res)
}

func (r *Resolver) bind(e *nameEntry, res *resourceEntry) {
	if e.bound && e.resID == res.id && e.stack == res.stack {
		return
	}
	e.bound, e.resID, e.stack = true, res.id, res.stack
	r.events = append(r.events, Assignment{Name: e.name, ResourceID: e.resID, IPStack: e.stack, IPs: e.ips})
	r.log.Debug("dns: name bound to resource", zap.String("name", e.name), zap.String("resource", e.resID),
		zap.Stringer("ip_stack", e.stack))
}

// PollAssignment returns the next new or changed Assignment: a name got proxy
// IPs, moved to another resource, or its resource's IP stack changed. The
// session sends each to the resource's gateway (assigned_ips) once connected.
// Assignments queue up until polled, so poll after every HandleQuery that
// answered locally and after every resource change.
func (r *Resolver) PollAssignment() (Assignment, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return Assignment{}, false
	}
	a := r.events[0]
	r.events[0] = Assignment{}
	r.events = r.events[1:]
	if len(r.events) == 0 {
		r.events = r.events[:0:0]
	}
	return a, true
}

// Assignments returns the current assignments of every name the resource
// covers, e.g. to send them all when a gateway connection (re)appears.
func (r *Resolver) Assignments(resourceID string) []Assignment {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Assignment
	for _, e := range r.names {
		if e.bound && e.resID == resourceID {
			out = append(out, Assignment{Name: e.name, ResourceID: e.resID, IPStack: e.stack, IPs: e.ips})
		}
	}
	return out
}

// LookupProxyIP maps a proxy IP back to its name and resource. ok is false
// when the IP was never assigned, no resource covers the name any more, or
// the resource's IP stack excludes the IP's family. It does not allocate.
func (r *Resolver) LookupProxyIP(ip netip.Addr) (ProxyTarget, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ip = ip.Unmap()
	e, found := r.byIP[ip]
	if !found || !e.bound {
		return ProxyTarget{}, false
	}
	if (ip.Is4() && !e.stack.IPv4()) || (ip.Is6() && !e.stack.IPv6()) {
		return ProxyTarget{}, false
	}
	return ProxyTarget{Name: e.name, ResourceID: e.resID, IPStack: e.stack}, true
}

// ProxyIPsOf returns the proxy IPs assigned to name, if any.
func (r *Resolver) ProxyIPsOf(name string) (ProxyIPs, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.names[strings.ToLower(strings.TrimSuffix(name, "."))]
	if !ok {
		return ProxyIPs{}, false
	}
	return e.ips, true
}

// Stats returns the counters. Safe to call from any goroutine.
func (r *Resolver) Stats() Stats {
	return Stats{
		Queries:           r.stats.queries.Load(),
		Answered:          r.stats.answered.Load(),
		ForwardedUpstream: r.stats.upstream.Load(),
		ForwardedSite:     r.stats.site.Load(),
		Dropped:           r.stats.dropped.Load(),
		Malformed:         r.stats.malformed.Load(),
	}
}

// entryFor returns the entry for name, assigning proxy IPs on first use.
func (r *Resolver) entryFor(name []byte) (*nameEntry, error) {
	if e, ok := r.names[string(name)]; ok {
		return e, nil
	}
	if r.maxNames > 0 && len(r.names) >= r.maxNames {
		return nil, ErrProxyIPsExhausted
	}
	ips, err := r.alloc.allocate()
	if err != nil {
		return nil, err
	}
	e := &nameEntry{name: string(name), ips: ips}
	r.names[e.name] = e
	for _, a := range ips.V4 {
		r.byIP[a] = e
	}
	for _, a := range ips.V6 {
		r.byIP[a] = e
	}
	r.log.Debug("dns: assigned proxy IPs", zap.String("name", e.name))
	return e, nil
}

// HandleQuery decides what to do with one query sent to a sentinel. msg is
// a UDP payload or, for TransportTCP, one length-prefixed message. Local
// replies are written into out (MaxResponseSize bytes always suffice) and
// returned as Result.Response. The error is non-nil only with ActionDrop.
//
// Decisions, in order:
//   - unusable bytes or a response → drop; broken question → FORMERR;
//     opcode other than QUERY → NOTIMP;
//   - class other than IN, names with bytes a pattern cannot express →
//     upstream;
//   - DoHCanaryDomain → NXDOMAIN;
//   - a single-label name is expanded with the search domain, if any, and
//     matched against resources in that form;
//   - resource name: A/AAAA → the proxy IPs the resource's IP stack allows
//     (the other family gets NOERROR without records), TTL 1 s; HTTPS →
//     NOERROR without records (an HTTPS record could hand out the real
//     addresses as hints and bypass the proxy IPs); any other type →
//     forward to the site;
//   - PTR for a proxy IP → the name it was assigned to;
//   - everything else → upstream.
//
// out may be the very buffer msg sits at the start of (out[:len(msg)] ==
// msg), so a reply can be written in place in the packet buffer the query
// arrived in. Answering a name that already has proxy IPs allocates nothing.
func (r *Resolver) HandleQuery(t Transport, msg, out []byte) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.queries.Add(1)
	res, err := r.handle(t, msg, out)
	switch res.Action {
	case ActionDrop:
		r.stats.dropped.Add(1)
	case ActionRespond:
		r.stats.answered.Add(1)
	case ActionForwardUpstream:
		r.stats.upstream.Add(1)
	case ActionForwardSite:
		r.stats.site.Add(1)
	}
	return res, err
}

func (r *Resolver) handle(t Transport, msg, out []byte) (Result, error) {
	w := respWriter{buf: out, ok: true}
	if t == TransportTCP {
		if len(msg) < 2 || int(binary.BigEndian.Uint16(msg)) != len(msg)-2 {
			return Result{}, ErrShortMessage
		}
		msg = msg[2:]
		w.put(0, 0) // length, patched in finish
	}
	q, err := parseQuery(msg, &r.scratch)
	switch {
	case errors.Is(err, ErrShortMessage) || errors.Is(err, ErrNotQuery):
		return Result{}, err
	case q.flags&opcodeMask != 0:
		w.header(&q, mdns.RcodeNotImplemented, 0, 0, 0)
		return r.finish(t, &w, Result{Query: msg})
	case err != nil:
		r.stats.malformed.Add(1)
		w.header(&q, mdns.RcodeFormatError, 0, 0, 0)
		return r.finish(t, &w, Result{Query: msg})
	}
	res := Result{Query: msg, QType: q.qtype}
	if q.qclass != mdns.ClassINET || !q.matchable {
		res.Action = ActionForwardUpstream
		return res, nil
	}
	if string(q.name) == DoHCanaryDomain {
		r.answerEmpty(&w, &q, msg, mdns.RcodeNameError)
		return r.finish(t, &w, res)
	}

	name := q.name
	if r.search != "" && len(name) > 0 && !containsDot(name) && len(name)+1+len(r.search) <= maxNameLen {
		n := copy(r.expanded[:], name)
		r.expanded[n] = '.'
		n++
		n += copy(r.expanded[n:], r.search)
		name = r.expanded[:n]
	}

	rsrc, matched := r.resources.match(name)
	switch {
	case matched && (q.qtype == mdns.TypeA || q.qtype == mdns.TypeAAAA):
		e, err := r.entryFor(name)
		if err != nil {
			r.log.Warn("dns: no proxy IPs for resource name", zap.Error(err))
			r.answerEmpty(&w, &q, msg, mdns.RcodeServerFailure)
			return r.finish(t, &w, res)
		}
		r.bind(e, rsrc)
		r.answerAddrs(&w, &q, msg, e)
		return r.finish(t, &w, res)
	case matched && q.qtype == mdns.TypeHTTPS:
		r.answerEmpty(&w, &q, msg, mdns.RcodeSuccess)
		return r.finish(t, &w, res)
	case matched:
		res.Action = ActionForwardSite
		res.ResourceID = rsrc.id
		return res, nil
	case q.qtype == mdns.TypePTR:
		if ip, ok := reverseAddr(q.name); ok {
			if e, ok := r.byIP[ip]; ok {
				r.answerPTR(&w, &q, msg, e.name)
				return r.finish(t, &w, res)
			}
		}
	}
	res.Action = ActionForwardUpstream
	return res, nil
}

func containsDot(b []byte) bool {
	for _, c := range b {
		if c == '.' {
			return true
		}
	}
	return false
}
