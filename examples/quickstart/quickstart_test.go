package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestQuickstartRuns builds the quickstart and runs it as a program. It
// must exit 0 and report a direct and a relayed fetch. When the test runs
// as root, the binary runs as nobody (uid/gid 65534, no supplementary
// groups, via setpriv) from a world-readable directory: the quickstart
// must need no privilege and no Go build cache at run time.
func TestQuickstartRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary (-short)")
	}
	dir, err := os.MkdirTemp("", "gozone-quickstart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "quickstart")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	args := []string{bin, "-timeout", "60s"}
	unprivileged := false
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("running as root in CI but setpriv is missing: cannot run the quickstart unprivileged")
			}
			t.Log("setpriv not found: running the quickstart as root")
		} else {
			args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)
			unprivileged = true
		}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("quickstart ran %v\n--- stdout ---\n%s--- stderr ---\n%s", time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("quickstart failed: %v", err)
	}
	out := stdout.String()
	for _, want := range []string{
		"gateway: joined the portal",
		"path: direct;",
		"path: relayed;",
		"candidates: local relay ",
		"→ 200 OK",
		"OK: direct and relayed fetches through the tunnel worked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if unprivileged && !strings.Contains(out, "running as uid 65534") {
		t.Errorf("the quickstart did not run as uid 65534")
	}
}
