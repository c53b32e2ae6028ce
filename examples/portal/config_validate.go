package devportal

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/gozone/gozone/connlib/portal"
)

var (
	slugRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	uuidRE  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	labelRE = regexp.MustCompile(`^[a-z0-9_?*-]+$`)
)

// minTokenLen keeps guessable tokens out of configurations.
const minTokenLen = 16

type validator struct{ errs []error }

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Validate checks the whole configuration and returns every problem found,
// each a *FieldError naming the field.
func (c *Config) Validate() error {
	v := &validator{}
	if c.Account.Slug == "" {
		v.fail("account.slug", "required")
	} else if !slugRE.MatchString(c.Account.Slug) {
		v.fail("account.slug", "%q must be lowercase letters, digits, '_' or '-'", c.Account.Slug)
	}
	checkSecret(v, "secret", c.Secret)
	if c.AuthorizationLifetime < 0 {
		v.fail("authorization_lifetime", "must not be negative")
	}
	for i, ip := range c.DNS.UpstreamDo53 {
		if _, err := netip.ParseAddr(ip); err != nil {
			v.fail(fmt.Sprintf("dns.upstream_do53[%d]", i), "%q is not an IP address", ip)
		}
	}

	tokens := map[string]string{} // token → field that first used it
	useToken := func(field, tok string) {
		switch {
		case len(tok) < minTokenLen:
			v.fail(field, "token must be at least %d characters", minTokenLen)
		case tokens[tok] != "":
			v.fail(field, "token already used by %s", tokens[tok])
		default:
			tokens[tok] = field
		}
	}
	ids := map[string]string{}
	useID := func(field, id string) {
		if id == "" {
			return
		}
		if !uuidRE.MatchString(id) {
			v.fail(field, "%q is not a lowercase UUID", id)
		} else if ids[id] != "" {
			v.fail(field, "id already used by %s", ids[id])
		} else {
			ids[id] = field
		}
	}

	sites := map[string]bool{}
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		uniqueName(v, f+".name", s.Name, sites)
		useID(f+".id", s.ID)
		for j, t := range s.GatewayTokens {
			useToken(fmt.Sprintf("%s.gateway_tokens[%d]", f, j), t)
		}
	}
	actors, groups := map[string]bool{}, map[string]bool{}
	for i, a := range c.Actors {
		f := fmt.Sprintf("actors[%d]", i)
		uniqueName(v, f+".name", a.Name, actors)
		useID(f+".id", a.ID)
		for j, g := range a.Groups {
			if g == "" {
				v.fail(fmt.Sprintf("%s.groups[%d]", f, j), "empty group name")
			}
			groups[g] = true
		}
		for j, t := range a.Tokens {
			useToken(fmt.Sprintf("%s.tokens[%d]", f, j), t)
		}
	}
	resources := map[string]bool{}
	internet := ""
	for i, r := range c.Resources {
		f := fmt.Sprintf("resources[%d]", i)
		uniqueName(v, f+".name", r.Name, resources)
		useID(f+".id", r.ID)
		checkResource(v, f, r, sites)
		if r.Type == portal.ResourceInternet {
			if internet != "" {
				v.fail(f+".type", "only one internet resource is allowed (also %s)", internet)
			}
			internet = f
		}
	}
	for i, p := range c.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		if p.Group == "" {
			v.fail(f+".group", "required")
		} else if !groups[p.Group] {
			v.fail(f+".group", "no actor is in group %q", p.Group)
		}
		if p.Resource == "" {
			v.fail(f+".resource", "required")
		} else if !resources[p.Resource] {
			v.fail(f+".resource", "unknown resource %q", p.Resource)
		}
	}
	checkRelays(v, &c.Relays, useID)
	return errors.Join(v.errs...)
}

func uniqueName(v *validator, field, name string, seen map[string]bool) {
	switch {
	case name == "":
		v.fail(field, "required")
	case seen[name]:
		v.fail(field, "duplicate name %q", name)
	}
	seen[name] = true
}

func checkSecret(v *validator, field, s string) {
	if s == "" {
		return
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) < 32 {
		v.fail(field, "must be hex of at least 32 bytes (64 hex digits)")
	}
}

func checkResource(v *validator, f string, r ResourceConfig, sites map[string]bool) {
	switch r.Type {
	case portal.ResourceCIDR:
		p, err := netip.ParsePrefix(r.Address)
		if err != nil {
			v.fail(f+".address", "%q is not a CIDR prefix", r.Address)
		} else if p.Masked() != p {
			v.fail(f+".address", "%q has host bits set (did you mean %s?)", r.Address, p.Masked())
		}
	case portal.ResourceIP:
		if _, err := netip.ParseAddr(r.Address); err != nil {
			v.fail(f+".address", "%q is not an IP address", r.Address)
		}
	case portal.ResourceDNS:
		if err := checkDNSPattern(r.Address); err != nil {
			v.fail(f+".address", "%q: %v", r.Address, err)
		}
	case portal.ResourceInternet:
		if r.Address != "" {
			v.fail(f+".address", "must be empty for an internet resource")
		}
	case "":
		v.fail(f+".type", "required (cidr, ip, dns or internet)")
	default:
		v.fail(f+".type", "%q is not one of cidr, ip, dns, internet", r.Type)
	}
	switch r.IPStack {
	case "", "dual", "ipv4_only", "ipv6_only":
		if r.IPStack != "" && r.Type != portal.ResourceDNS {
			v.fail(f+".ip_stack", "only dns resources have an ip_stack")
		}
	default:
		v.fail(f+".ip_stack", "%q is not one of dual, ipv4_only, ipv6_only", r.IPStack)
	}
	if len(r.Sites) == 0 {
		v.fail(f+".sites", "at least one site is required")
	}
	for j, s := range r.Sites {
		if !sites[s] {
			v.fail(fmt.Sprintf("%s.sites[%d]", f, j), "unknown site %q", s)
		}
	}
	for j, fl := range r.Filters {
		if _, err := fl.compile(); err != nil {
			v.fail(fmt.Sprintf("%s.filters[%d]", f, j), "%v", err)
		}
	}
}

// checkDNSPattern accepts names such as "gitlab.corp", "*.corp.example.com",
// "**.corp", "app-?.corp": lowercase labels, wildcards * ? in labels, "**"
// as a whole label, and a last label without wildcards.
func checkDNSPattern(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	for i, l := range labels {
		if len(l) == 0 || len(l) > 63 {
			return fmt.Errorf("label %d is empty or longer than 63 characters", i+1)
		}
		if !labelRE.MatchString(l) {
			return fmt.Errorf("label %q has characters other than a-z 0-9 - _ * ?", l)
		}
		if strings.Contains(l, "**") && l != "**" {
			return fmt.Errorf("label %q: ** must be a whole label", l)
		}
	}
	if last := labels[len(labels)-1]; strings.ContainsAny(last, "*?") {
		return errors.New("the last label must not contain wildcards")
	}
	return nil
}

// compile turns a FilterConfig into the wire filter.
func (fc FilterConfig) compile() (portal.Filter, error) {
	switch fc.Protocol {
	case portal.ProtocolICMP:
		if fc.Ports != "" {
			return portal.Filter{}, errors.New("icmp filters have no ports")
		}
		return portal.Filter{Protocol: portal.ProtocolICMP}, nil
	case portal.ProtocolTCP, portal.ProtocolUDP:
	case "":
		return portal.Filter{}, errors.New("protocol required (tcp, udp or icmp)")
	default:
		return portal.Filter{}, fmt.Errorf("protocol %q is not tcp, udp or icmp", fc.Protocol)
	}
	f := portal.Filter{Protocol: fc.Protocol, PortStart: 0, PortEnd: 65535}
	if fc.Ports == "" {
		return f, nil
	}
	lo, hi, isRange := strings.Cut(fc.Ports, "-")
	start, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	end := start
	var err2 error
	if isRange {
		end, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil || start == 0 || end < start {
		return portal.Filter{}, fmt.Errorf("ports %q must be N or N-M with 1 <= N <= M <= 65535", fc.Ports)
	}
	f.PortStart, f.PortEnd = uint16(start), uint16(end)
	return f, nil
}

func checkRelays(v *validator, r *RelaysConfig, useID func(field, id string)) {
	b := r.Builtin
	if b.PublicIP != "" {
		if _, err := netip.ParseAddr(b.PublicIP); err != nil {
			v.fail("relays.builtin.public_ip", "%q is not an IP address", b.PublicIP)
		}
	}
	if (b.MinPort == 0) != (b.MaxPort == 0) {
		v.fail("relays.builtin.min_port", "min_port and max_port must be set together")
	} else if b.MinPort > b.MaxPort {
		v.fail("relays.builtin.min_port", "min_port %d is above max_port %d", b.MinPort, b.MaxPort)
	}
	checkSecret(v, "relays.builtin.secret", b.Secret)
	names := map[string]bool{}
	for i, e := range r.External {
		f := fmt.Sprintf("relays.external[%d]", i)
		uniqueName(v, f+".name", e.Name, names)
		useID(f+".id", e.ID)
		if _, err := netip.ParseAddrPort(e.Addr); err != nil {
			v.fail(f+".addr", "%q is not IP:port (devices need an IP literal)", e.Addr)
		}
		if e.Username == "" {
			v.fail(f+".username", "required")
		}
		if e.Password == "" {
			v.fail(f+".password", "required")
		}
	}
}
