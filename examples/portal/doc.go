// Package devportal is gozone's self-hostable development portal: the
// server side of the Firezone portal protocol (reference §4) for one
// account, configured from one YAML/JSON file, with an optional built-in
// TURN relay (package relay). It is what the quickstart, the end-to-end
// tests and people trying gozone run against; it lives in
// examples/portal and its binary in examples/portal/cmd/portal.
//
// What it does (reference §2.2 and §4):
//   - gateways connect to /gateway/v2/websocket with a site token, clients
//     to /client/v2/websocket with an actor token (X-Authorization: Bearer);
//     both get init (addresses from 100.64.0.0/11 and fd00:2021:1111::/107,
//     relays with per-device credentials, resources for clients,
//     authorizations for gateways);
//   - request_authorization → policy check (forbidden / not_found) → a
//     gateway of the resource's site (the one the client already uses, else
//     the least loaded, ties at random; only online gateways) →
//     create_authorization with a signed ref, ICE credentials and PSK
//     derived as Firezone does (ICECredentials, GatewayPSK) →
//     authorization_created to the client, or authorization_creation_failed
//     {offline} after 15 s or when the gateway goes away;
//   - candidates are relayed both ways between paired devices; no_relays is
//     answered with relays_presence;
//   - authorizations expire after authorization_lifetime (reject_access to
//     the gateway);
//   - Reload/Apply push configuration deltas (see Apply).
//
// Not implemented: client-to-client device pools, iceless mode, flow logs,
// version-compatibility checks between clients and gateways.
//
// Use in tests:
//
//	p, err := devportal.New(devportal.Options{Config: cfg, RelayListen: "127.0.0.1:0", Logger: log})
//	addr, err := p.Listen("127.0.0.1:0")
//	defer p.Close()
//	// devices connect to p.URL() + "/gateway/v2" or "/client/v2"
//
// Tokens are only held hashed in the compiled configuration and are never
// logged; neither are keys, PSKs or relay passwords.
package devportal
