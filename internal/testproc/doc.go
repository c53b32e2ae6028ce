// Package testproc is the plumbing gozone's end-to-end tests share for
// running real binaries: building them once per test binary (Build, Main),
// capturing their output in a goroutine-safe buffer that tests wait on
// (LogBuffer), starting, signalling and stopping them — in a network
// namespace or not — with cleanup on failure (Proc, Start), a private /etc
// for them (WithEtc, EtcDir, WaitNameserver), the development portal
// (StartPortal), services they talk to (ServeTCP) and bounded polling
// (Poll, Eventually).
//
// It is test support, not API: only _test.go files import it. Nothing here
// needs root; the namespaces come from internal/netns and internal/topo,
// whose *netns.NS and *topo.Host satisfy Starter, Dialer and Listener.
//
// Every wait is bounded. Timeout is the default bound: generous, because
// the machines running these tests are slow and shared.
package testproc

import "time"

// Timeout bounds every "until something happens" wait of this package
// that takes no explicit timeout (WaitLog, WaitTCP, StartPortal).
const Timeout = 60 * time.Second
