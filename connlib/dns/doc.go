// Package dns is gozone's client-side DNS core for DNS resources: the
// address patterns of DNS resources and which one wins when several match,
// the stable proxy IPs handed out for resource names, the sans-IO stub
// resolver that intercepts queries sent to the sentinel DNS servers, the
// bookkeeping for queries it forwards (ID mapping and timeouts), and the
// mapping between upstream resolvers and sentinel addresses.
//
// It knows nothing about the portal's message types: resources, upstreams and
// search domains come in as plain Go values, and the caller (the client or
// gateway session) does all IO. The in-tunnel control messages that tell a
// gateway which proxy IPs belong to which name live in the subpackage
// p2pcontrol.
//
// Behaviour follows Firezone's connlib (reference/firezone.md §1.4 "Client
// DNS"); where the reference is silent, the doc comment on the type says what
// was chosen and why.
package dns
