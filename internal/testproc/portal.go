package testproc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Dialer dials TCP from somewhere, e.g. from inside a namespace:
// *topo.Host is one.
type Dialer interface {
	DialTCP(ap netip.AddrPort, timeout time.Duration) (net.Conn, error)
}

// Portal is one run of the development portal binary
// (examples/portal/cmd/portal) with its built-in TURN relay.
type Portal struct {
	// Name names the process in failure messages (default "portal").
	Name string
	// Config is the YAML configuration (the --config file's content).
	Config string
	// Listen is the portal's WebSocket address (--listen).
	Listen netip.AddrPort
	// RelayListen is the built-in relay's UDP address (--relay-listen).
	RelayListen netip.AddrPort
	// In runs the portal (see Start); nil is the test's own namespace.
	In Starter
	// From, if set, is where the portal must be reachable from:
	// StartPortal waits until From can connect to Listen.
	From Dialer
}

// URL is the portal's WebSocket URL for FIREZONE_API_URL.
func (c Portal) URL() string { return "ws://" + c.Listen.String() }

// StartPortal builds the portal binary (once; the package's TestMain must
// call Main), writes the configuration to a file of the test's temporary
// directory, starts the portal and, with From set, waits up to Timeout
// until it accepts TCP connections from there. It fails the test on
// error; the process stops on cleanup (see Start).
func StartPortal(t testing.TB, c Portal) *Proc {
	t.Helper()
	bin := Build(t, PortalPkg)
	cfg := filepath.Join(t.TempDir(), "portal.yaml")
	if err := os.WriteFile(cfg, []byte(c.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.Name == "" {
		c.Name = "portal"
	}
	cmd := exec.Command(bin, "--config", cfg, "--listen", c.Listen.String(), "--relay-listen", c.RelayListen.String())
	p := Start(t, c.In, c.Name, cmd)
	if c.From != nil {
		WaitTCP(t, c.From, c.Listen)
	}
	return p
}

// WaitTCP waits up to Timeout until a TCP connection from d to ap
// succeeds (each attempt bounded by a second), and closes it.
func WaitTCP(t testing.TB, d Dialer, ap netip.AddrPort) {
	t.Helper()
	err := Poll(Timeout, 100*time.Millisecond, func() error {
		c, err := d.DialTCP(ap, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("%v not reachable: %v", ap, err)
	}
}

// Local dials and listens in the test's own namespace: a Dialer and a
// Listener for tests on loopback.
type Local struct{}

var (
	_ Dialer   = Local{}
	_ Listener = Local{}
)

// DialTCP dials ap with net.DialTimeout.
func (Local) DialTCP(ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", ap.String(), timeout)
	if err != nil {
		return nil, fmt.Errorf("dial %v: %w", ap, err)
	}
	return c, nil
}

// ListenTCP listens on ap with net.ListenTCP.
func (Local) ListenTCP(ap netip.AddrPort) (*net.TCPListener, error) {
	return net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
}
