package snownet

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Closing the Nodes must stop every goroutine they started (device, Bind,
// ICE agents, relay readers, event pump, timers).
func TestNodeCloseLeaksNoGoroutines(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	func() {
		a := newTestPeer(t, "alice", "10.0.0.1", nil)
		b := newTestPeer(t, "bob", "10.0.0.2", nil)
		connectPair(t, a, b)
		a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
		pingOnce(t, a, b, 10*time.Second)
		a.node.Close()
		b.node.Close()
	}()
	// pion closes some of its goroutines asynchronously: allow them time.
	var err error
	for i := 0; i < 50; i++ {
		if err = goleak.Find(opts...); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
}
