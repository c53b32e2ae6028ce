package e2e

import (
	"testing"

	"github.com/gozone/gozone/internal/testproc"
)

// TestMain removes the binaries the tests built (testproc.Build).
func TestMain(m *testing.M) { testproc.Main(m) }

// gateway is a gateway binary running in one of the topology's namespaces
// (see env.startGateway), with the id the portal gave it: the portal's log
// and the client's status name gateways by it.
type gateway struct {
	*testproc.Proc
	portalID string
}
