package phoenix

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRaceDialer: of several resolved addresses, the one that answers
// wins; when none answers, the errors of all are returned.
func TestRaceDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	// 127.0.0.2/127.0.0.3 have nothing on that port (refused).
	d := &raceDialer{timeout: 5 * time.Second, lookup: func(ctx context.Context, host string) ([]net.IPAddr, error) {
		if host != "portal.test" {
			t.Errorf("lookup of %q", host)
		}
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 2)}, {IP: net.IPv4(127, 0, 0, 1)}, {IP: net.IPv4(127, 0, 0, 3)}}, nil
	}}
	c, err := d.DialContext(ctxT(t), "tcp", net.JoinHostPort("portal.test", port))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
		t.Errorf("connected to %s", got)
	}
	c.Close()
	d.lookup = func(ctx context.Context, host string) ([]net.IPAddr, error) {
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 2)}, {IP: net.IPv4(127, 0, 0, 3)}}, nil
	}
	if _, err := d.DialContext(ctxT(t), "tcp", net.JoinHostPort("portal.test", port)); err == nil {
		t.Fatal("dial to closed ports succeeded")
	}
}

// TestClientWSS: an https URL becomes wss and TLSConfig is used.
func TestClientWSS(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	srv.HandleTopic("gateway", HandlerFuncs{OnJoin: func(ch *Channel, _ json.RawMessage) (any, error) {
		return map[string]bool{"tls": ch.sock.header.Get("Upgrade") != ""}, nil
	}})
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("not TLS")
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); hs.Close() })
	tlsCfg := hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c := newTestClient(t, ClientConfig{URL: hs.URL + "/gateway/v2", TLSConfig: tlsCfg})
	runClient(t, c)
	if j := nextEvent[*Joined](t, c, nil); string(j.Response) != `{"tls":true}` {
		t.Fatalf("join response %s", j.Response)
	}
	// Without the test CA the handshake fails and is retried, not fatal.
	c2 := newTestClient(t, ClientConfig{URL: hs.URL + "/gateway/v2", TLSConfig: &tls.Config{}, Clock: newFakeClock()})
	runClient(t, c2)
	if sc := nextEvent[*StateChange](t, c2, isState(StateReconnecting)); sc.Err == nil || isFatal(sc.Err) {
		t.Fatalf("err %v", sc.Err)
	}
}
