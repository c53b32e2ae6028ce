package phoenix

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind
// (sessions, sockets, timers of clients that were stopped).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
