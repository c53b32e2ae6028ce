package devportal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validYAML is a small, complete configuration the tests mutate.
const validYAML = `
account: {slug: acme, name: Acme}
secret: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
dns: {search_domain: corp.example.com, upstream_do53: [1.1.1.1]}
sites:
  - name: hq
    gateway_tokens: ["gw-token-hq-0123456789"]
actors:
  - name: alice
    groups: [eng]
    tokens: ["client-token-alice-0123"]
resources:
  - name: web
    type: cidr
    address: 172.20.0.0/16
    sites: [hq]
    filters: [{protocol: tcp, ports: "80-443"}, {protocol: icmp}]
policies:
  - {group: eng, resource: web}
relays:
  builtin: {enabled: false}
`

func TestExampleConfigIsValid(t *testing.T) {
	c, err := LoadConfig("portal.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Resources) < 4 || len(c.Relays.External) == 0 || !c.Relays.Builtin.Enabled {
		t.Fatalf("example should show every resource type and both relay kinds: %+v", c)
	}
	types := map[string]bool{}
	for _, r := range c.Resources {
		types[r.Type] = true
	}
	for _, want := range []string{"cidr", "ip", "dns", "internet"} {
		if !types[want] {
			t.Errorf("example lacks a %s resource", want)
		}
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := []struct{ old, new, field, reason string }{
		{"address: 172.20.0.0/16", "address: 172.20.0.1/16", "resources[0].address", "host bits"},
		{"address: 172.20.0.0/16", "address: banana", "resources[0].address", "not a CIDR"},
		{"type: cidr", "type: magic", "resources[0].type", "not one of"},
		{`ports: "80-443"`, `ports: "443-80"`, "resources[0].filters[0]", "N-M"},
		{"{protocol: icmp}", "{protocol: icmp, ports: \"1\"}", "resources[0].filters[1]", "no ports"},
		{"sites: [hq]", "sites: [branch]", "resources[0].sites[0]", `unknown site "branch"`},
		{"{group: eng, resource: web}", "{group: sales, resource: web}", "policies[0].group", `no actor is in group "sales"`},
		{"{group: eng, resource: web}", "{group: eng, resource: db}", "policies[0].resource", `unknown resource "db"`},
		{`["client-token-alice-0123"]`, `["gw-token-hq-0123456789"]`, "actors[0].tokens[0]", "already used by sites[0].gateway_tokens[0]"},
		{`["client-token-alice-0123"]`, `["short"]`, "actors[0].tokens[0]", "at least 16"},
		{"slug: acme", "slug: Acme!", "account.slug", "lowercase"},
		{"upstream_do53: [1.1.1.1]", "upstream_do53: [one]", "dns.upstream_do53[0]", "not an IP"},
		{`secret: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"`, `secret: "abc"`, "secret", "hex"},
		{"builtin: {enabled: false}", "builtin: {enabled: true, public_ip: 1.2.3}", "relays.builtin.public_ip", "not an IP"},
		{"builtin: {enabled: false}", "builtin: {enabled: false}\n  external: [{name: c, addr: turn.example.com:3478, username: u, password: p}]", "relays.external[0].addr", "IP literal"},
		{"builtin: {enabled: false}", "builtin: {enabled: false}\n  external: [{name: c, addr: 10.0.0.1:3478}]", "relays.external[0].username", "required"},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			y := strings.Replace(validYAML, c.old, c.new, 1)
			if y == validYAML {
				t.Fatalf("test bug: %q not found", c.old)
			}
			_, err := ParseConfig([]byte(y))
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v, want a FieldError", err)
			}
			if !strings.Contains(err.Error(), c.field+": ") || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("error %q does not name %s / %q", err, c.field, c.reason)
			}
		})
	}
}

func TestConfigDNSPatterns(t *testing.T) {
	for _, ok := range []string{"gitlab.corp", "*.corp.example.com", "**.corp", "app-?.corp", "a_b.example.com"} {
		if err := checkDNSPattern(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a..b", "corp.*", "UPPER.corp", "a**.corp", "sp ace.corp", strings.Repeat("a", 64) + ".corp"} {
		if err := checkDNSPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConfigUnknownFieldAndSeveralErrors(t *testing.T) {
	_, err := ParseConfig([]byte(strings.Replace(validYAML, "name: hq", "name: hq\n    colour: blue", 1)))
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field: %v", err)
	}
	y := strings.Replace(validYAML, "type: cidr", "type: nope", 1)
	y = strings.Replace(y, "slug: acme", "slug: \"\"", 1)
	_, err = ParseConfig([]byte(y))
	if err == nil || !strings.Contains(err.Error(), "account.slug: required") || !strings.Contains(err.Error(), "resources[0].type") {
		t.Fatalf("want both errors: %v", err)
	}
}

func TestLoadConfigFileErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(validYAML, "172.20.0.0/16", "300.1.1.0/24", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "resources[0].address") {
		t.Fatalf("err %v", err)
	}
	// JSON is accepted too.
	js := `{"account":{"slug":"a"},"sites":[{"name":"s","gateway_tokens":["0123456789abcdefg"]}]}`
	if _, err := ParseConfig([]byte(js)); err != nil {
		t.Fatalf("json: %v", err)
	}
}

func TestFilterCompile(t *testing.T) {
	f, err := FilterConfig{Protocol: "udp", Ports: "53"}.compile()
	if err != nil || f.PortStart != 53 || f.PortEnd != 53 {
		t.Fatalf("%+v %v", f, err)
	}
	f, err = FilterConfig{Protocol: "tcp"}.compile()
	if err != nil || f.PortStart != 0 || f.PortEnd != 65535 {
		t.Fatalf("%+v %v", f, err)
	}
	for _, bad := range []FilterConfig{{Protocol: "tcp", Ports: "0"}, {Protocol: "tcp", Ports: "70000"}, {Protocol: "sctp"}, {}} {
		if _, err := bad.compile(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
