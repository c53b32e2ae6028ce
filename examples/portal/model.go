package devportal

import (
	"crypto/sha256"
	"net/netip"
	"slices"
	"sort"

	"github.com/gozone/gozone/connlib/portal"
)

// model is a validated Config compiled for lookups: ids resolved, tokens
// indexed, policies turned into a group → resource set. It is immutable;
// a reload builds a new one.
type model struct {
	cfg           *Config
	accountID     string
	sites         map[string]*site // by id
	siteByName    map[string]*site
	actors        map[string]*actor // by id
	gatewayTokens map[[32]byte]*site
	clientTokens  map[[32]byte]*actor
	resources     map[string]*resource // by id
	byName        map[string]*resource
	allowed       map[string]map[string]bool // group → resource id
	upstreamDo53  []portal.Do53Upstream
}

type site struct{ ID, Name string }

type actor struct {
	ID, Name, Email string
	Groups          []string
}

type resource struct {
	ID, Name, Type, Address, AddressDescription, IPStack string
	SiteIDs                                              []string
	Filters                                              []portal.Filter
}

// tokenKey is how tokens are held: hashed, so a heap dump or a debug print
// of the model shows no token.
func tokenKey(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

func orID(id string, parts ...string) string {
	if id != "" {
		return id
	}
	return derivedUUID(parts...)
}

// compile assumes c.Validate() passed.
func compile(c *Config) *model {
	slug := c.Account.Slug
	m := &model{
		cfg:           c,
		accountID:     derivedUUID("account", slug),
		sites:         map[string]*site{},
		siteByName:    map[string]*site{},
		actors:        map[string]*actor{},
		gatewayTokens: map[[32]byte]*site{},
		clientTokens:  map[[32]byte]*actor{},
		resources:     map[string]*resource{},
		byName:        map[string]*resource{},
		allowed:       map[string]map[string]bool{},
	}
	for _, s := range c.Sites {
		st := &site{ID: orID(s.ID, slug, "site", s.Name), Name: s.Name}
		m.sites[st.ID], m.siteByName[s.Name] = st, st
		for _, t := range s.GatewayTokens {
			m.gatewayTokens[tokenKey(t)] = st
		}
	}
	for _, a := range c.Actors {
		ac := &actor{ID: orID(a.ID, slug, "actor", a.Name), Name: a.Name, Email: a.Email, Groups: slices.Clone(a.Groups)}
		m.actors[ac.ID] = ac
		for _, t := range a.Tokens {
			m.clientTokens[tokenKey(t)] = ac
		}
	}
	for _, r := range c.Resources {
		res := &resource{
			ID: orID(r.ID, slug, "resource", r.Name), Name: r.Name, Type: r.Type, Address: r.Address,
			AddressDescription: r.AddressDescription, IPStack: r.IPStack,
		}
		for _, s := range r.Sites {
			res.SiteIDs = append(res.SiteIDs, m.siteByName[s].ID)
		}
		for _, f := range r.Filters {
			pf, _ := f.compile()
			res.Filters = append(res.Filters, pf)
		}
		m.resources[res.ID], m.byName[r.Name] = res, res
	}
	for _, p := range c.Policies {
		if m.allowed[p.Group] == nil {
			m.allowed[p.Group] = map[string]bool{}
		}
		m.allowed[p.Group][m.byName[p.Resource].ID] = true
	}
	for _, ip := range c.DNS.UpstreamDo53 {
		m.upstreamDo53 = append(m.upstreamDo53, portal.Do53Upstream{IP: portal.IP{Addr: netip.MustParseAddr(ip)}})
	}
	return m
}

// allows reports whether some policy lets a use resource id.
func (m *model) allows(a *actor, resourceID string) bool {
	for _, g := range a.Groups {
		if m.allowed[g][resourceID] {
			return true
		}
	}
	return false
}

// visible returns the resources a may use, sorted by name (stable output).
func (m *model) visible(a *actor) []*resource {
	var out []*resource
	for id, r := range m.resources {
		if m.allows(a, id) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// wireAddress renders an ip resource as a /32 or /128 cidr, as the portal
// does for both devices.
func (r *resource) wireType() (typ, addr string) {
	if r.Type == portal.ResourceIP {
		a := netip.MustParseAddr(r.Address)
		return portal.ResourceCIDR, netip.PrefixFrom(a, a.BitLen()).String()
	}
	return r.Type, r.Address
}

func (r *resource) gatewayResource() portal.GatewayResource {
	typ, addr := r.wireType()
	return portal.GatewayResource{ID: r.ID, Type: typ, Address: addr, Name: r.Name, Filters: slices.Clone(r.Filters)}
}

func (m *model) clientResource(r *resource) portal.ClientResource {
	typ, addr := r.wireType()
	cr := portal.ClientResource{ID: r.ID, Type: typ, Address: addr, Name: r.Name, Filters: slices.Clone(r.Filters), IPStack: r.IPStack}
	if r.AddressDescription != "" {
		d := r.AddressDescription
		cr.AddressDescription = &d
	}
	for _, sid := range r.SiteIDs {
		cr.Sites = append(cr.Sites, portal.Site{ID: sid, Name: m.sites[sid].Name})
	}
	if typ == portal.ResourceInternet {
		cr.CanBeDisabled = true
	}
	return cr
}

func (r *resource) servedBy(siteID string) bool { return slices.Contains(r.SiteIDs, siteID) }

func (m *model) clientInterface(ipv4, ipv6 netip.Addr) portal.ClientInterface {
	iface := portal.ClientInterface{
		IPv4: portal.IP{Addr: ipv4}, IPv6: portal.IP{Addr: ipv6},
		UpstreamDo53: append([]portal.Do53Upstream{}, m.upstreamDo53...),
		UpstreamDoH:  []portal.DoHUpstream{},
	}
	if d := m.cfg.DNS.SearchDomain; d != "" {
		iface.SearchDomain = &d
	}
	return iface
}
