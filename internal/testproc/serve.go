package testproc

import (
	"net"
	"net/netip"
	"testing"
)

// Listener listens for TCP somewhere, e.g. inside a namespace:
// *topo.Host is one. The listener it returns is closed on the test's
// cleanup (ServeTCP closes it too).
type Listener interface {
	ListenTCP(ap netip.AddrPort) (*net.TCPListener, error)
}

// ServeTCP is a service for the processes under test: it listens on ap
// through in and runs handle on a goroutine of its own for every
// connection, closing the connection when handle returns, until the test's
// cleanup closes the listener. It fails the test if it cannot listen.
func ServeTCP(t testing.TB, in Listener, ap netip.AddrPort, handle func(net.Conn)) {
	t.Helper()
	ln, err := in.ListenTCP(ap)
	if err != nil {
		t.Fatalf("listen on %v: %v", ap, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}
