package netns

import (
	"net/netip"
	"testing"
	"time"
)

// TestDropInboundNew: b refuses new inbound UDP on v0, but a's reply to a
// flow b opened passes.
func TestDropInboundNew(t *testing.T) {
	RequireRoot(t)
	a, b := pair(t)
	must(t, b.DropInboundNew("v0"))
	ca := listenUDP(t, a, "10.77.0.1:4000")
	cb := listenUDP(t, b, "10.77.0.2:4000")
	if _, err := exchange(t, ca, cb, "10.77.0.2:4000", []byte("unsolicited")); err == nil {
		t.Fatal("new inbound UDP reached b through DropInboundNew")
	}
	// b opens the flow; a's answer is a reply and must arrive.
	if _, err := exchange(t, cb, ca, "10.77.0.1:4000", []byte("hello")); err != nil {
		t.Fatalf("b → a: %v", err)
	}
	var got netip.AddrPort
	var err error
	for i := 0; i < 3; i++ {
		if got, err = exchange(t, ca, cb, "10.77.0.2:4000", []byte("reply")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("reply a → b dropped: %v", err)
	}
	if got.Addr() != netip.MustParseAddr("10.77.0.1") {
		t.Fatalf("reply from %v", got)
	}
}
