package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
)

// TestMain removes the binaries the tests built (testproc.Build).
func TestMain(m *testing.M) { testproc.Main(m) }

// bins are the binaries under test, set by buildBinaries.
var bins struct {
	client, gateway, portal string
}

// buildBinaries builds the client, gateway and portal (once per test
// process: testproc.Build caches them).
func buildBinaries(t *testing.T) {
	t.Helper()
	bins.client = testproc.Build(t, testproc.ClientPkg)
	bins.gateway = testproc.Build(t, testproc.GatewayPkg)
	bins.portal = testproc.Build(t, testproc.PortalPkg)
}

// wait bounds every "until something happens" loop of the tests; the
// machines running them are slow and shared.
const wait = testproc.Timeout

// proc is a binary running in one of the topology's namespaces (or one
// the test added). It is stopped on cleanup, before the namespaces go.
type proc struct {
	*testproc.Proc
	// portalID is the id the portal gave a gateway (its log and the
	// client's status name gateways by it).
	portalID string

	// name, cmd and log are the embedded Proc's Name, Cmd and Log under
	// their old names (kept for files written against them).
	name string
	cmd  *exec.Cmd
	log  *testproc.LogBuffer
}

// start runs cmd in ns with its output captured, dumped to the test log if
// the test fails (see testproc.Start).
func start(t *testing.T, ns *netns.NS, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	return wrap(testproc.Start(t, ns, name, cmd))
}

// wrap makes a proc of a testproc.Proc (StartPortal's, say).
func wrap(p *testproc.Proc) *proc {
	return &proc{Proc: p, name: p.Name, cmd: p.Cmd, log: p.Log}
}

// Old names of the helpers that moved to internal/testproc, kept as thin
// aliases for files written against them.

type logBuf = testproc.LogBuffer

func (pr *proc) stop() error                        { return pr.Stop() }
func (pr *proc) signal(t *testing.T, sig os.Signal) { t.Helper(); pr.Signal(t, sig) }
func (pr *proc) mark() int                          { return pr.Mark() }
func (pr *proc) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	return pr.WaitLog(t, parts...)
}
func (pr *proc) count(parts ...string) int { return pr.Log.Count(parts...) }
func (pr *proc) running(t *testing.T)      { t.Helper(); pr.Running(t) }
func (pr *proc) kill(t *testing.T)         { t.Helper(); pr.Kill(t) }
func (pr *proc) waitLogSince(t *testing.T, m int, parts ...string) string {
	t.Helper()
	return pr.WaitLogSince(t, m, parts...)
}
func lineHas(l string, parts []string) bool { return testproc.LineHas(l, parts...) }
func tail(s string, n int) string           { return testproc.Tail(s, n) }
func findLine(s string, parts ...string) (string, bool) {
	for _, l := range strings.Split(s, "\n") {
		if testproc.LineHas(l, parts...) {
			return l, true
		}
	}
	return "", false
}
