package connlib

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gozone/gozone/tun"
)

// TestGatewayNoGoroutineLeak: a gateway that joined the portal, accepted a
// client and was stopped leaves no goroutine behind.
func TestGatewayNoGoroutineLeak(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	func() {
		p := gwStartPortal(t, gwTestPortalConfig(t, "0s"), "127.0.0.1:0")
		defer p.Close()
		a, b := tun.NewMemPair(tun.MemConfig{Name: "leak"})
		defer b.Close()
		g, err := NewGateway(GatewayConfig{Tun: a, APIURL: p.URL(), Token: gwTestGatewayToken, FirezoneID: "gw-leak",
			Logger: gwTestLogger(t), Snownet: GatewaySnownet{HostIP: netip.MustParseAddr("127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		waitFor(t, "gateway ready", g.Ready)
		g.createAuthorization(gwTestCreateAuthorization(t))
		waitFor(t, "connection created", func() bool { return len(g.Status().Connections) == 1 })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(gwWait):
			t.Fatal("Run did not return")
		}
	}()
	// pion and WireGuard goroutines wind down shortly after Close.
	deadline := time.Now().Add(20 * time.Second)
	for goleak.Find(ignore) != nil && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}
