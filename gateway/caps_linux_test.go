package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
)

// TestNonRootExactFix runs the binary as an unprivileged user without
// capabilities: it must exit 1 with the exact setcap command for its path.
func TestNonRootExactFix(t *testing.T) {
	netns.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("setpriv (util-linux) is needed")
		}
		t.Skip("setpriv not installed")
	}
	// testproc builds into a directory any user may enter (0755).
	bin := testproc.Build(t, ".")
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin, "some-token")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, output %s", err, out)
	}
	want := "sudo setcap cap_net_admin+eip " + bin
	if !strings.Contains(string(out), want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("output %q, want one line containing %q", out, want)
	}
}
