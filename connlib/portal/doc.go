// Package portal holds the Firezone portal protocol as gozone's devices and
// its development portal speak it (reference §4): the payload types of every
// message on the "gateway" (/gateway/v2) and "client" (/client/v2) channels
// in both directions, their tolerant decoders, and the small pieces of a
// device's portal session that do not depend on the transport: the connect
// URL (GatewayURL, ClientURL, ExternalID), the User-Agent, and Session,
// which sends set_snownet_capabilities after every join and holds ICE
// candidates while the portal is unreachable.
//
// Encoding is plain encoding/json on the payload types; the JSON matches
// the reference's examples (testdata/golden). Decoding goes through
// DecodeGatewayIngress, DecodeGatewayEgress, DecodeClientIngress and
// DecodeClientEgress, which map v1 event aliases to v2 names and are
// tolerant where the portal evolves: unknown fields are ignored, unknown
// events give ErrUnknownEvent, unknown resource types are dropped from lists
// (ErrUnknownResourceType for a single resource), optional fields may be
// missing, IP fields accept a "/prefix", resources accept "gateway_groups"
// for "sites" and authorization_created accepts "gateway_group_id" for
// "site_id". Ignorable tells "log and ignore" errors from malformed input.
//
// The package never logs payloads: they carry pre-shared keys and relay
// passwords.
package portal
