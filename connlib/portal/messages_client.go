package portal

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Client channel (topic "client", path /client/v2), reference §4.4.

// Client-channel event names not shared with the gateway channel.
const (
	EventResourceCreatedOrUpdated         = "resource_created_or_updated"
	EventResourceDeleted                  = "resource_deleted"
	EventConfigChanged                    = "config_changed"
	EventAuthorizationCreationFailed      = "authorization_creation_failed"
	EventClientIceCandidates              = "client_ice_candidates"
	EventInvalidateClientIceCandidates    = "invalidate_client_ice_candidates"
	EventClientDeviceAccessAuthorized     = "client_device_access_authorized"
	EventClientDeviceAccessDenied         = "client_device_access_denied"
	EventClientIceCandidateError          = "client_ice_candidate_error"
	EventDevicePoolDomainResolved         = "device_pool_domain_resolved"
	EventDevicePoolDomainResolutionFailed = "device_pool_domain_resolution_failed"
	EventResourceFiltersUpdated           = "resource_filters_updated"

	EventRequestAuthorization           = "request_authorization"
	EventResolveDevicePoolDomain        = "resolve_device_pool_domain"
	EventNewGatewayIceCandidates        = "new_gateway_ice_candidates"
	EventInvalidateGatewayIceCandidates = "invalidate_gateway_ice_candidates"
	EventNewClientIceCandidates         = "new_client_ice_candidates"
	// Legacy client→portal events the portal still accepts.
	EventLegacyPrepareConnection   = "prepare_connection"
	EventLegacyReuseConnection     = "reuse_connection"
	EventLegacyRequestDeviceAccess = "request_device_access"
)

// Reasons of authorization_creation_failed. Unknown values are tolerated.
const (
	ReasonNotFound         = "not_found"
	ReasonOffline          = "offline"
	ReasonVersionMismatch  = "version_mismatch"
	ReasonForbidden        = "forbidden"
	ReasonDisabled         = "disabled"
	ReasonAmbiguousAddress = "ambiguous_address"
	ReasonMissingAddress   = "missing_address"
	ReasonInvalidAddress   = "invalid_address"
)

// ClientInit is the client's init.
type ClientInit struct {
	Interface      ClientInterface `json:"interface"`
	Resources      ClientResources `json:"resources"`
	Relays         Relays          `json:"relays"`
	Authorizations []Authorization `json:"authorizations"`
	FlowLogs       *FlowLogs       `json:"flow_logs,omitempty"`
}

// ResourceDeleted is the payload of resource_deleted: a bare JSON string,
// the resource id.
type ResourceDeleted string

// ConfigChanged carries a new interface configuration.
type ConfigChanged struct {
	Interface ClientInterface `json:"interface"`
}

// AuthorizationCreated is the portal's answer to request_authorization:
// everything the client needs to connect to the chosen gateway.
type AuthorizationCreated struct {
	ResourceID            string         `json:"resource_id"`
	GatewayID             string         `json:"gateway_id"`
	SiteID                string         `json:"site_id"`
	GatewayPublicKey      string         `json:"gateway_public_key"`
	GatewayIPv4           IP             `json:"gateway_ipv4"`
	GatewayIPv6           IP             `json:"gateway_ipv6"`
	PresharedKey          string         `json:"preshared_key"`
	ClientICECredentials  ICECredentials `json:"client_ice_credentials"`
	GatewayICECredentials ICECredentials `json:"gateway_ice_credentials"`
	UseIceless            bool           `json:"use_iceless"`
	FlowLogsIngestToken   string         `json:"flow_logs_ingest_token"`
}

// UnmarshalJSON accepts the legacy gateway_group_id for site_id.
func (a *AuthorizationCreated) UnmarshalJSON(b []byte) error {
	type plain AuthorizationCreated
	var j struct {
		plain
		GatewayGroupID string `json:"gateway_group_id"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*a = AuthorizationCreated(j.plain)
	if a.SiteID == "" {
		a.SiteID = j.GatewayGroupID
	}
	return nil
}

// AuthorizationCreationFailed tells the client why it got no gateway.
type AuthorizationCreationFailed struct {
	ResourceID         string   `json:"resource_id"`
	Reason             string   `json:"reason"`
	ViolatedProperties []string `json:"violated_properties,omitempty"`
}

// ClientDeviceAccessAuthorized sets up a client-to-client connection.
// Resource and ExpiresAt are present only on the target (ice_role
// "controlled").
type ClientDeviceAccessAuthorized struct {
	ClientID             string         `json:"client_id"`
	ClientName           string         `json:"client_name"`
	ClientPublicKey      string         `json:"client_public_key"`
	ClientIPv4           IP             `json:"client_ipv4"`
	ClientIPv6           IP             `json:"client_ipv6"`
	PresharedKey         string         `json:"preshared_key"`
	LocalICECredentials  ICECredentials `json:"local_ice_credentials"`
	RemoteICECredentials ICECredentials `json:"remote_ice_credentials"`
	ICERole              string         `json:"ice_role"`
	UseIceless           bool           `json:"use_iceless"`
	Resource             *PoolResource  `json:"resource,omitempty"`
	ExpiresAt            *int64         `json:"expires_at,omitempty"`
	FlowLogsIngestToken  string         `json:"flow_logs_ingest_token"`
}

// ICE roles of ClientDeviceAccessAuthorized.
const (
	ICERoleControlling = "controlling"
	ICERoleControlled  = "controlled"
)

// PoolResource is the resource reference of a c2c authorization.
type PoolResource struct {
	ID      string   `json:"id"`
	Filters []Filter `json:"filters"`
}

// ClientDeviceAccessDenied refuses a c2c request.
type ClientDeviceAccessDenied struct {
	ClientID *string `json:"client_id,omitempty"`
	IPv4     *IP     `json:"ipv4,omitempty"`
	IPv6     *IP     `json:"ipv6,omitempty"`
	Reason   string  `json:"reason"`
}

// ClientIceCandidateError reports a c2c candidate delivery failure.
type ClientIceCandidateError struct {
	ClientID string `json:"client_id"`
	Reason   string `json:"reason"`
}

// DevicePoolDomainResolved answers resolve_device_pool_domain. The IPs may
// arrive with a /prefix (see IP).
type DevicePoolDomainResolved struct {
	ResourceID string `json:"resource_id"`
	Domain     string `json:"domain"`
	IPv4       IP     `json:"ipv4"`
	IPv6       IP     `json:"ipv6"`
}

// DevicePoolDomainResolutionFailed answers resolve_device_pool_domain.
type DevicePoolDomainResolutionFailed struct {
	ResourceID string `json:"resource_id"`
	Domain     string `json:"domain"`
	Reason     string `json:"reason"`
}

// ResourceFiltersUpdated replaces a resource's filters.
type ResourceFiltersUpdated struct {
	ID      string   `json:"id"`
	Filters []Filter `json:"filters"`
}

// RequestAuthorization asks for access to a resource. IPv4/IPv6 (exactly
// one) are set only for device-pool targets.
type RequestAuthorization struct {
	ResourceID          string   `json:"resource_id"`
	ConnectedGatewayIDs []string `json:"connected_gateway_ids"`
	IPv4                *IP      `json:"ipv4,omitempty"`
	IPv6                *IP      `json:"ipv6,omitempty"`
}

// ResolveDevicePoolDomain asks the portal to resolve a pool domain.
type ResolveDevicePoolDomain struct {
	ResourceID string `json:"resource_id"`
	Domain     string `json:"domain"`
}

// LegacyBroadcastToGateways is the legacy client candidate broadcast.
type LegacyBroadcastToGateways struct {
	GatewayIDs []string `json:"gateway_ids"`
	Candidates []string `json:"candidates"`
}

func knownClientResource(b []byte) (any, error) {
	var r ClientResource
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if !r.Known() {
		return nil, fmt.Errorf("%w: %q", ErrUnknownResourceType, r.Type)
	}
	return &r, nil
}

var clientIngress = &table{
	name: "client ingress",
	decoders: map[string]decodeFunc{
		EventInit:                             objectInto[ClientInit],
		EventResourceCreatedOrUpdated:         knownClientResource,
		EventResourceDeleted:                  into[ResourceDeleted],
		EventConfigChanged:                    objectInto[ConfigChanged],
		EventRelaysPresence:                   objectInto[RelaysPresence],
		EventAuthorizationCreated:             objectInto[AuthorizationCreated],
		EventAuthorizationCreationFailed:      objectInto[AuthorizationCreationFailed],
		EventIceCandidates:                    objectInto[GatewayCandidates],
		EventInvalidateIceCandidates:          objectInto[GatewayCandidates],
		EventClientIceCandidates:              objectInto[ClientCandidates],
		EventInvalidateClientIceCandidates:    objectInto[ClientCandidates],
		EventClientDeviceAccessAuthorized:     objectInto[ClientDeviceAccessAuthorized],
		EventClientDeviceAccessDenied:         objectInto[ClientDeviceAccessDenied],
		EventClientIceCandidateError:          objectInto[ClientIceCandidateError],
		EventDevicePoolDomainResolved:         objectInto[DevicePoolDomainResolved],
		EventDevicePoolDomainResolutionFailed: objectInto[DevicePoolDomainResolutionFailed],
		EventResourceFiltersUpdated:           objectInto[ResourceFiltersUpdated],
		EventRejectAccess:                     objectInto[RejectAccess],
		EventAccessAuthorizationExpiryUpdated: objectInto[AccessAuthorizationExpiryUpdated],
		EventDisconnect:                       objectInto[Disconnect],
	},
	aliases: map[string]string{
		"flow_created":                      EventAuthorizationCreated,
		"flow_creation_failed":              EventAuthorizationCreationFailed,
		"gateway_ice_candidates":            EventIceCandidates,
		"invalidate_gateway_ice_candidates": EventInvalidateIceCandidates,
	},
	obsolete: map[string]bool{EventAccessAuthorizationExpiryUpdated: true},
}

var clientEgress = &table{
	name: "client egress",
	decoders: map[string]decodeFunc{
		EventRequestAuthorization:              objectInto[RequestAuthorization],
		EventResolveDevicePoolDomain:           objectInto[ResolveDevicePoolDomain],
		EventNewGatewayIceCandidates:           objectInto[GatewayCandidates],
		EventInvalidateGatewayIceCandidates:    objectInto[GatewayCandidates],
		EventNewClientIceCandidates:            objectInto[ClientCandidates],
		EventInvalidateClientIceCandidates:     objectInto[ClientCandidates],
		EventNoRelays:                          objectInto[Empty],
		EventSetSnownetCapabilities:            objectInto[SnownetCapabilities],
		EventBroadcastIceCandidates:            objectInto[LegacyBroadcastToGateways],
		EventBroadcastInvalidatedIceCandidates: objectInto[LegacyBroadcastToGateways],
		EventLegacyPrepareConnection:           into[json.RawMessage],
		EventLegacyReuseConnection:             into[json.RawMessage],
		EventLegacyRequestConnection:           into[json.RawMessage],
		EventLegacyRequestDeviceAccess:         into[json.RawMessage],
	},
	aliases: map[string]string{"create_flow": EventRequestAuthorization},
	obsolete: map[string]bool{
		EventLegacyPrepareConnection:   true,
		EventLegacyReuseConnection:     true,
		EventLegacyRequestConnection:   true,
		EventLegacyRequestDeviceAccess: true,
	},
}

// DecodeClientIngress decodes a portal→client push. Errors wrapping
// ErrUnknownEvent, ErrUnknownResourceType or ErrObsolete mean "log and
// ignore"; any other error is a malformed payload.
func DecodeClientIngress(event string, payload []byte) (Message, error) {
	return clientIngress.decode(event, payload)
}

// DecodeClientEgress decodes a client→portal message (the portal side).
func DecodeClientEgress(event string, payload []byte) (Message, error) {
	return clientEgress.decode(event, payload)
}

// Ignorable reports whether err from a Decode function means "log and
// ignore" rather than a malformed message.
func Ignorable(err error) bool {
	return errors.Is(err, ErrUnknownEvent) || errors.Is(err, ErrUnknownResourceType) || errors.Is(err, ErrObsolete)
}
