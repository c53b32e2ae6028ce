package devportal

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that Close leaves no goroutine behind: pion's TURN read
// loops, phoenix sockets and timers included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
