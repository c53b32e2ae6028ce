package devportal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the development portal's whole configuration, read from one
// YAML (or JSON) file; see portal.example.yaml for a complete example.
// Names are the keys that tie sites, actors, groups, resources and
// policies together; IDs (UUIDs) are derived from names unless given, so
// they stay stable across reloads.
type Config struct {
	Account AccountConfig `yaml:"account"`
	// Secret (hex, ≥ 32 bytes) keys the signed authorization refs and the
	// per-device PSK bases. Default: random at start, so PSKs change when the
	// portal restarts.
	Secret string `yaml:"secret"`
	// AuthorizationLifetime is how long a client's access to a resource
	// lasts before it must be requested again; 0 means no expiry.
	AuthorizationLifetime time.Duration    `yaml:"authorization_lifetime"`
	DNS                   DNSConfig        `yaml:"dns"`
	Sites                 []SiteConfig     `yaml:"sites"`
	Actors                []ActorConfig    `yaml:"actors"`
	Resources             []ResourceConfig `yaml:"resources"`
	Policies              []PolicyConfig   `yaml:"policies"`
	Relays                RelaysConfig     `yaml:"relays"`
}

// AccountConfig names the single account this portal serves.
type AccountConfig struct {
	// Slug is sent to gateways as account_slug ([a-z0-9_-]).
	Slug string `yaml:"slug"`
	Name string `yaml:"name"`
}

// DNSConfig is sent to clients as their interface DNS settings.
type DNSConfig struct {
	SearchDomain string `yaml:"search_domain"`
	// UpstreamDo53 are resolver IPs; empty means the client uses the
	// system resolvers.
	UpstreamDo53 []string `yaml:"upstream_do53"`
}

// SiteConfig is a group of gateways. Any gateway presenting one of
// GatewayTokens joins this site.
type SiteConfig struct {
	Name          string   `yaml:"name"`
	ID            string   `yaml:"id"`
	GatewayTokens []string `yaml:"gateway_tokens"`
}

// ActorConfig is a user. Clients presenting one of Tokens act as this user
// and get the resources the user's Groups have policies for.
type ActorConfig struct {
	Name   string   `yaml:"name"`
	ID     string   `yaml:"id"`
	Email  string   `yaml:"email"`
	Groups []string `yaml:"groups"`
	Tokens []string `yaml:"tokens"`
}

// ResourceConfig is something clients reach through the gateways of its
// sites.
type ResourceConfig struct {
	Name string `yaml:"name"`
	ID   string `yaml:"id"`
	// Type is cidr, ip, dns or internet.
	Type string `yaml:"type"`
	// Address: cidr "10.0.0.0/8", ip "10.0.0.5", dns "*.corp.example.com"
	// (wildcards * and ? in the first labels, ** for any depth); empty for
	// internet.
	Address            string         `yaml:"address"`
	AddressDescription string         `yaml:"address_description"`
	Sites              []string       `yaml:"sites"`
	Filters            []FilterConfig `yaml:"filters"`
	// IPStack (dns only): dual (default), ipv4_only or ipv6_only.
	IPStack string `yaml:"ip_stack"`
}

// FilterConfig allows one protocol; Ports is "443" or "8000-8999" (tcp and
// udp only; empty means all ports).
type FilterConfig struct {
	Protocol string `yaml:"protocol"`
	Ports    string `yaml:"ports"`
}

// PolicyConfig lets every actor in Group use Resource.
type PolicyConfig struct {
	Group    string `yaml:"group"`
	Resource string `yaml:"resource"`
}

// RelaysConfig lists the TURN relays handed to devices (at most two are
// handed out, in this order: built-in first).
type RelaysConfig struct {
	Builtin  BuiltinRelayConfig    `yaml:"builtin"`
	External []ExternalRelayConfig `yaml:"external"`
}

// BuiltinRelayConfig configures the in-process relay. Its listen address is
// a command-line flag (--relay-listen).
type BuiltinRelayConfig struct {
	Enabled bool `yaml:"enabled"`
	// PublicIP is the address devices use to reach the relay; required when
	// it listens on a wildcard address.
	PublicIP string `yaml:"public_ip"`
	MinPort  uint16 `yaml:"min_port"`
	MaxPort  uint16 `yaml:"max_port"`
	// Secret (hex, ≥ 32 bytes) derives relay passwords; default random.
	Secret string `yaml:"secret"`
}

// ExternalRelayConfig is a TURN server with static long-term credentials
// (e.g. coturn with lt-cred-mech, realm "firezone").
type ExternalRelayConfig struct {
	Name     string `yaml:"name"`
	ID       string `yaml:"id"`
	Addr     string `yaml:"addr"` // IP:port
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid config")

// FieldError names the offending field and why it is wrong.
type FieldError struct {
	Field  string // e.g. "resources[2].address"
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
func (e *FieldError) Unwrap() error { return ErrConfig }

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML or JSON, rejecting unknown fields, and
// validates the result. The error names the field and the reason; several
// problems are joined.
func ParseConfig(b []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
