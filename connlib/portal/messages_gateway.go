package portal

import (
	"encoding/json"
	"fmt"
)

// Gateway channel (topic "gateway", path /gateway/v2), reference §4.3.

// Topic names.
const (
	TopicGateway = "gateway"
	TopicClient  = "client"
)

// Gateway-channel event names not shared with the client channel.
const (
	EventCreateAuthorization               = "create_authorization"
	EventResourceUpdated                   = "resource_updated"
	EventBroadcastIceCandidates            = "broadcast_ice_candidates"
	EventBroadcastInvalidatedIceCandidates = "broadcast_invalidated_ice_candidates"
	// Legacy pre-1.4 pushes a current gateway never receives.
	EventLegacyRequestConnection = "request_connection"
	EventLegacyAllowAccess       = "allow_access"
	EventLegacyConnectionReady   = "connection_ready"
)

// GatewayConfig is init.config; unused by connlib, kept for compatibility.
type GatewayConfig struct {
	IPv4MasqueradeEnabled bool `json:"ipv4_masquerade_enabled"`
	IPv6MasqueradeEnabled bool `json:"ipv6_masquerade_enabled"`
}

// GatewayInit is the gateway's init: a full resync, re-pushed on IP change.
type GatewayInit struct {
	Interface      GatewayInterface `json:"interface"`
	Config         *GatewayConfig   `json:"config,omitempty"`
	AccountSlug    string           `json:"account_slug"`
	Relays         Relays           `json:"relays"`
	Authorizations []Authorization  `json:"authorizations"`
	FlowLogs       *FlowLogs        `json:"flow_logs,omitempty"`
}

// AuthorizingClient is the client object of create_authorization.
type AuthorizingClient struct {
	ID                     string  `json:"id"`
	PublicKey              string  `json:"public_key"`
	PresharedKey           string  `json:"preshared_key"`
	IPv4                   IP      `json:"ipv4"`
	IPv6                   IP      `json:"ipv6"`
	Version                string  `json:"version"`
	DeviceSerial           *string `json:"device_serial"`
	DeviceOSName           *string `json:"device_os_name"`
	DeviceOSVersion        *string `json:"device_os_version"`
	DeviceUUID             *string `json:"device_uuid"`
	FirebaseInstallationID *string `json:"firebase_installation_id"`
	IdentifierForVendor    *string `json:"identifier_for_vendor"`
}

// CreateAuthorization asks the gateway to accept a client for a resource.
// The gateway upserts the connection (ICE controlled) and answers
// authorization_created with Ref echoed.
type CreateAuthorization struct {
	Ref                   string            `json:"ref"`
	Resource              GatewayResource   `json:"resource"`
	Client                AuthorizingClient `json:"client"`
	ClientICECredentials  ICECredentials    `json:"client_ice_credentials"`
	GatewayICECredentials ICECredentials    `json:"gateway_ice_credentials"`
	// ExpiresAt is UNIX seconds; nil means no expiry.
	ExpiresAt           *int64   `json:"expires_at"`
	Subject             *Subject `json:"subject,omitempty"`
	UseIceless          bool     `json:"use_iceless"`
	FlowLogsIngestToken string   `json:"flow_logs_ingest_token"`
}

// LegacyPeer is the peer object of the pre-1.4 request_connection.
type LegacyPeer struct {
	PersistentKeepalive int    `json:"persistent_keepalive"`
	PublicKey           string `json:"public_key"`
	PresharedKey        string `json:"preshared_key"`
	IPv4                IP     `json:"ipv4"`
	IPv6                IP     `json:"ipv6"`
}

// LegacyRequestConnection is the pre-1.4 request_connection push.
type LegacyRequestConnection struct {
	Ref      string          `json:"ref"`
	Resource GatewayResource `json:"resource"`
	Client   struct {
		ID      string          `json:"id"`
		Payload json.RawMessage `json:"payload"`
		Peer    LegacyPeer      `json:"peer"`
	} `json:"client"`
	ExpiresAt *int64 `json:"expires_at"`
}

// LegacyAllowAccess is the pre-1.4 allow_access push.
type LegacyAllowAccess struct {
	Ref        string          `json:"ref"`
	ClientID   string          `json:"client_id"`
	Resource   GatewayResource `json:"resource"`
	ExpiresAt  *int64          `json:"expires_at"`
	Payload    json.RawMessage `json:"payload"`
	ClientIPv4 IP              `json:"client_ipv4"`
	ClientIPv6 IP              `json:"client_ipv6"`
}

// AuthorizationRef is the gateway's answer to create_authorization.
type AuthorizationRef struct {
	Ref string `json:"ref"`
}

// BroadcastCandidates is the gateway's candidate message for several
// clients at once.
type BroadcastCandidates struct {
	ClientIDs  []string `json:"client_ids"`
	Candidates []string `json:"candidates"`
}

// LegacyConnectionReady is the pre-1.4 gateway answer.
type LegacyConnectionReady struct {
	Ref            string          `json:"ref"`
	GatewayPayload json.RawMessage `json:"gateway_payload"`
}

func knownGatewayResource(b []byte) (any, error) {
	var r GatewayResource
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if !r.Known() {
		return nil, fmt.Errorf("%w: %q", ErrUnknownResourceType, r.Type)
	}
	return &r, nil
}

func createAuthorization(b []byte) (any, error) {
	v, err := objectInto[CreateAuthorization](b)
	if err != nil {
		return nil, err
	}
	if r := v.(*CreateAuthorization).Resource; !r.Known() {
		return nil, fmt.Errorf("%w: %q", ErrUnknownResourceType, r.Type)
	}
	return v, nil
}

var gatewayIngress = &table{
	name: "gateway ingress",
	decoders: map[string]decodeFunc{
		EventInit:                             objectInto[GatewayInit],
		EventCreateAuthorization:              createAuthorization,
		EventIceCandidates:                    objectInto[ClientCandidates],
		EventInvalidateIceCandidates:          objectInto[ClientCandidates],
		EventRejectAccess:                     objectInto[RejectAccess],
		EventRelaysPresence:                   objectInto[RelaysPresence],
		EventResourceUpdated:                  knownGatewayResource,
		EventAccessAuthorizationExpiryUpdated: objectInto[AccessAuthorizationExpiryUpdated],
		EventDisconnect:                       objectInto[Disconnect],
		EventLegacyRequestConnection:          objectInto[LegacyRequestConnection],
		EventLegacyAllowAccess:                objectInto[LegacyAllowAccess],
	},
	aliases: map[string]string{"authorize_flow": EventCreateAuthorization},
	obsolete: map[string]bool{
		EventAccessAuthorizationExpiryUpdated: true,
		EventLegacyRequestConnection:          true,
		EventLegacyAllowAccess:                true,
	},
}

var gatewayEgress = &table{
	name: "gateway egress",
	decoders: map[string]decodeFunc{
		EventAuthorizationCreated:              objectInto[AuthorizationRef],
		EventBroadcastIceCandidates:            objectInto[BroadcastCandidates],
		EventBroadcastInvalidatedIceCandidates: objectInto[BroadcastCandidates],
		EventNoRelays:                          objectInto[Empty],
		EventSetSnownetCapabilities:            objectInto[SnownetCapabilities],
		EventLegacyConnectionReady:             objectInto[LegacyConnectionReady],
	},
	aliases:  map[string]string{"flow_authorized": EventAuthorizationCreated},
	obsolete: map[string]bool{EventLegacyConnectionReady: true},
}

// DecodeGatewayIngress decodes a portal→gateway push. Errors wrapping
// ErrUnknownEvent, ErrUnknownResourceType or ErrObsolete mean "log and
// ignore"; any other error is a malformed payload.
func DecodeGatewayIngress(event string, payload []byte) (Message, error) {
	return gatewayIngress.decode(event, payload)
}

// DecodeGatewayEgress decodes a gateway→portal message (the portal side).
func DecodeGatewayEgress(event string, payload []byte) (Message, error) {
	return gatewayEgress.decode(event, payload)
}
