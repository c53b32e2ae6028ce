package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

// TestRelayLossReconnect: as TestRelayRestart (both sites behind symmetric
// NATs, relayed; the relay is killed during a transfer), but it asserts
// why the client's connection ended: its TURN client found the allocation
// under the connection's pair replaced ("relay allocation lost"), not
// ICE's disconnected timeout. An order of events, not a timing: the
// client's watchdog checks the allocation after 3 s of silence and the
// restarted relay answers 437 at once, while ICE gives up after 5 s of
// silence plus 2 s of grace. The relay is restarted at once (not after
// 2 s as in TestRelayRestart) so that a slow relay start on a loaded
// machine does not eat that margin. The transfer completes; the longest
// stall is logged.
func TestRelayLossReconnect(t *testing.T) {
	netns.RequireRoot(t)
	t.Parallel()
	r, c, x, res := relayedTransfer(t, 11)
	mark := c.Mark()
	r.p.Kill(t)
	killed := time.Now()
	r.start(t)
	ended := c.WaitLogSince(t, mark, "connection to gateway ended")
	endedAfter := time.Since(killed)
	if !strings.Contains(ended, "relay allocation lost") {
		t.Fatalf("the client's connection ended for another reason than the lost allocation (ICE's timeout?): %s", ended)
	}
	done(t, res, "transfer across the relay restart")
	t.Logf("connection ended %v after the relay was killed (allocation lost); transfer done after %v; longest stall %v",
		endedAfter.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), x.maxGap.Round(time.Millisecond))
	status(t, c, `"connected":true`, `"path":"relayed"`)
}
