package connlib

import (
	"errors"
	"net"
	"testing"
	"time"

	devportal "github.com/gozone/gozone/examples/portal"
)

// TestClientPortalUnreachable: a portal that never answers ends Run with
// ErrClientPortalUnreachable after phoenix's first-connection budget.
func TestClientPortalUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tc := startTestClientURL(t, "ws://"+addr, ctClientToken)
	select {
	case err := <-tc.done:
		if !errors.Is(err, ErrClientPortalUnreachable) {
			t.Fatalf("Run: %v, want ErrClientPortalUnreachable", err)
		}
		tc.done <- err
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not give up")
	}
}

// TestClientResetWhilePortalDown: a reset while the portal is unreachable
// does not end the session after the new connection's 15 s first-connect
// budget; it reconnects when the portal is back.
func TestClientResetWhilePortalDown(t *testing.T) {
	t.Parallel()
	cfg := twoSiteConfig(t, false)
	p, err := devportal.New(devportal.Options{Config: cfg, RelayListen: "127.0.0.1:0", Logger: clientTestLogger(t, "portal")})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc := startTestClientURL(t, p.URL(), ctClientToken)
	tc.waitReady(t)
	p.Close()
	tc.c.Reset("test")
	select {
	case err := <-tc.done:
		t.Fatalf("session ended while the portal was down: %v", err)
	case <-time.After(20 * time.Second):
	}
	p2, err := devportal.New(devportal.Options{Config: cfg, RelayListen: "127.0.0.1:0", Logger: clientTestLogger(t, "portal2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	if _, err := p2.Listen(addr.String()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(clientWait)
	for !tc.c.Status().PortalConnected {
		select {
		case err := <-tc.done:
			t.Fatalf("session ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no rejoin after the portal came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
