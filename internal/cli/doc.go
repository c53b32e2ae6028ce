// Package cli holds what gozone's gateway and client binaries share between
// flags and the session: the logger (human or JSON), the token (argument,
// environment or systemd credential), the persistent device id, the
// root/CAP_NET_ADMIN check with the exact fix, environment-backed flag
// defaults, the health-check server and signal handling.
//
// Nothing here logs a token.
package cli
