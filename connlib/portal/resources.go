package portal

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Resource types (the "type" tag).
const (
	ResourceDNS               = "dns"
	ResourceCIDR              = "cidr"
	ResourceIP                = "ip" // portal-side only; rendered as cidr /32 or /128
	ResourceInternet          = "internet"
	ResourceStaticDevicePool  = "static_device_pool"
	ResourceDynamicDevicePool = "dynamic_device_pool"
)

// ErrUnknownResourceType is returned when a single resource (not a list)
// has a type this version does not know. Callers log and ignore it, as the
// portal may add resource types before devices learn them.
var ErrUnknownResourceType = errors.New("portal: unknown resource type")

// DefaultInternetResourceName is the name of an internet resource the
// portal sent without one.
const DefaultInternetResourceName = "Internet Resource"

// GatewayResource is a resource as the gateway sees it: dns, cidr or
// internet.
type GatewayResource struct {
	ID      string
	Type    string
	Address string // dns: pattern such as "*.corp.example.com"; cidr: prefix
	Name    string
	Filters []Filter
}

type gatewayResourceJSON struct {
	ID      string   `json:"id"`
	Type    string   `json:"type"`
	Address string   `json:"address"`
	Name    string   `json:"name"`
	Filters []Filter `json:"filters"`
}

// MarshalJSON writes the shape of reference §4.3 for the resource's type.
func (r GatewayResource) MarshalJSON() ([]byte, error) {
	if r.Type == ResourceInternet {
		return json.Marshal(struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}{r.ID, r.Type})
	}
	f := r.Filters
	if f == nil {
		f = []Filter{}
	}
	return json.Marshal(gatewayResourceJSON{ID: r.ID, Type: r.Type, Address: r.Address, Name: r.Name, Filters: f})
}

// UnmarshalJSON decodes any type; Known reports whether the type is one the
// gateway can act on.
func (r *GatewayResource) UnmarshalJSON(b []byte) error {
	var j gatewayResourceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	*r = GatewayResource{ID: j.ID, Type: j.Type, Address: j.Address, Name: j.Name, Filters: j.Filters}
	if r.Type == ResourceInternet && r.Name == "" {
		r.Name = DefaultInternetResourceName
	}
	return nil
}

// Known reports whether the gateway understands this resource type.
func (r GatewayResource) Known() bool {
	switch r.Type {
	case ResourceDNS, ResourceCIDR, ResourceInternet:
		return true
	}
	return false
}

// PoolDevice is one member of a static device pool.
type PoolDevice struct {
	ClientID string `json:"client_id"`
	IPv4     IP     `json:"ipv4"`
	IPv6     IP     `json:"ipv6"`
}

// ClientResource is a resource as the client sees it (reference §4.4). Which
// fields are meaningful depends on Type.
type ClientResource struct {
	ID                 string
	Type               string
	Address            string  // dns, cidr, dynamic_device_pool
	AddressDescription *string // dns, cidr
	Name               string
	Filters            []Filter
	Sites              []Site       // dns, cidr, internet
	IPStack            string       // dns, optional ("dual", "ipv4_only", "ipv6_only")
	CanBeDisabled      bool         // internet
	Devices            []PoolDevice // static_device_pool
}

type clientResourceJSON struct {
	ID                 string       `json:"id"`
	Type               string       `json:"type"`
	Address            string       `json:"address"`
	AddressDescription *string      `json:"address_description"`
	Name               string       `json:"name"`
	Filters            []Filter     `json:"filters"`
	Sites              []Site       `json:"sites"`
	GatewayGroups      []Site       `json:"gateway_groups"`
	IPStack            string       `json:"ip_stack"`
	CanBeDisabled      bool         `json:"can_be_disabled"`
	Devices            []PoolDevice `json:"devices"`
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MarshalJSON writes the shape of reference §4.4 for the resource's type,
// with "sites" (never the legacy "gateway_groups").
func (r ClientResource) MarshalJSON() ([]byte, error) {
	type base struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	b := base{r.ID, r.Type}
	switch r.Type {
	case ResourceDNS, ResourceCIDR:
		return json.Marshal(struct {
			base
			Address            string   `json:"address"`
			AddressDescription *string  `json:"address_description"`
			Name               string   `json:"name"`
			Filters            []Filter `json:"filters"`
			Sites              []Site   `json:"sites"`
			IPStack            string   `json:"ip_stack,omitempty"`
		}{b, r.Address, r.AddressDescription, r.Name, orEmpty(r.Filters), orEmpty(r.Sites), r.IPStack})
	case ResourceInternet:
		return json.Marshal(struct {
			base
			CanBeDisabled bool   `json:"can_be_disabled"`
			Sites         []Site `json:"sites"`
		}{b, r.CanBeDisabled, orEmpty(r.Sites)})
	case ResourceStaticDevicePool:
		return json.Marshal(struct {
			base
			Name    string       `json:"name"`
			Devices []PoolDevice `json:"devices"`
			Filters []Filter     `json:"filters"`
		}{b, r.Name, orEmpty(r.Devices), orEmpty(r.Filters)})
	case ResourceDynamicDevicePool:
		return json.Marshal(struct {
			base
			Name    string   `json:"name"`
			Address string   `json:"address"`
			Filters []Filter `json:"filters"`
		}{b, r.Name, r.Address, orEmpty(r.Filters)})
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownResourceType, r.Type)
}

// UnmarshalJSON decodes any type, accepting "gateway_groups" as an alias of
// "sites". It does not fail on an unknown type; see Known.
func (r *ClientResource) UnmarshalJSON(b []byte) error {
	var j clientResourceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	sites := j.Sites
	if sites == nil {
		sites = j.GatewayGroups
	}
	*r = ClientResource{
		ID: j.ID, Type: j.Type, Address: j.Address, AddressDescription: j.AddressDescription,
		Name: j.Name, Filters: j.Filters, Sites: sites, IPStack: j.IPStack,
		CanBeDisabled: j.CanBeDisabled, Devices: j.Devices,
	}
	if r.Type == ResourceInternet && r.Name == "" {
		r.Name = DefaultInternetResourceName
	}
	return nil
}

// Known reports whether the client understands this resource type.
func (r ClientResource) Known() bool {
	switch r.Type {
	case ResourceDNS, ResourceCIDR, ResourceInternet, ResourceStaticDevicePool, ResourceDynamicDevicePool:
		return true
	}
	return false
}

// ClientResources is a resource list that drops entries of unknown type and
// entries that do not decode, so one new resource type never breaks init.
type ClientResources []ClientResource

// UnmarshalJSON keeps only known, well-formed resources.
func (rs *ClientResources) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("resources: %w", err)
	}
	out := make(ClientResources, 0, len(raw))
	for _, m := range raw {
		var r ClientResource
		if json.Unmarshal(m, &r) != nil || !r.Known() {
			continue
		}
		out = append(out, r)
	}
	*rs = out
	return nil
}
