package testproc

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestServeTCP: every connection gets the handler, and is closed when it
// returns.
func TestServeTCP(t *testing.T) {
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t, "tcp"))
	ServeTCP(t, Local{}, ap, func(c net.Conn) { _, _ = io.WriteString(c, "hello") })
	for i := 0; i < 3; i++ {
		c, err := Local{}.DialTCP(ap, Timeout)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(Timeout))
		b, err := io.ReadAll(c) // EOF only if the server closed it
		c.Close()
		if err != nil || string(b) != "hello" {
			t.Fatalf("connection %d: %q %v", i, b, err)
		}
	}
	wantFatal(t, "listen on", func(tb testing.TB) { ServeTCP(tb, Local{}, ap, func(net.Conn) {}) })
}
