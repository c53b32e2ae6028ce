// Package e2e holds gozone's end-to-end fault tests: the real portal,
// gateway and client binaries run in the network namespaces of
// internal/topo (two NATed sites, a resource network, an "internet" with
// the portal and a relay) while the tests inject faults — symmetric NAT,
// packet loss, portal and relay restarts, gateway failover, client
// roaming, garbage datagrams — and check that a hashed bulk transfer from
// the resource host still arrives intact.
//
// The package has no API; everything lives in _test.go files. The tests
// need root (they skip without it, and fail instead when CI is set).
package e2e
