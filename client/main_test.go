package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/testproc"
)

// TestMain removes the binaries the tests built (testproc.Build).
func TestMain(m *testing.M) { testproc.Main(m) }

// runCLI runs the binary's main logic with a clean environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	for _, k := range []string{"FIREZONE_TOKEN", "FIREZONE_ID", "FIREZONE_API_URL", "FIREZONE_DNS_CONTROL", "FIREZONE_TOKEN_PATH", "LOG_DIR"} {
		t.Setenv(k, "")
	}
	t.Setenv("FIREZONE_ID", "unit-test-id") // never write the default id file
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stderr bytes.Buffer
	code := run(args, &stderr)
	return code, stderr.String()
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"missing token", nil, []string{"--token-path", filepath.Join(dir, "nope")}, 1, "gozone-client: no token: set FIREZONE_TOKEN or write the token to the file given by --token-path"},
		{"unreadable token file", nil, []string{"--token-path", dir}, 1, "gozone-client: reading the token file"},
		{"bad dns control", map[string]string{"FIREZONE_TOKEN": "t"}, []string{"--dns-control", "magic"}, 1, "--dns-control \"magic\""},
		{"bad log format", map[string]string{"FIREZONE_TOKEN": "t"}, []string{"--log-format", "xml"}, 1, "--log-format"},
		{"stray argument", map[string]string{"FIREZONE_TOKEN": "t"}, []string{"sign-in"}, 1, "unexpected arguments"},
		{"bad max partition env", map[string]string{"MAX_PARTITION_TIME": "soon"}, nil, 1, "MAX_PARTITION_TIME"},
		{"check with env token", map[string]string{"FIREZONE_TOKEN": "t"}, []string{"--check", "--log-dir", filepath.Join(dir, "logs")}, 0, ""},
		{"check with token file", nil, []string{"--check", "--token-path", tokenFile}, 0, ""},
		{"max partition in days", map[string]string{"FIREZONE_TOKEN": "t"}, []string{"--check", "-m", "2d"}, 0, ""},
		{"bad max partition flag", map[string]string{"FIREZONE_TOKEN": "t"}, []string{"--max-partition-time", "soon"}, 1, "max-partition-time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCLI(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want %d with %q", code, out, tc.code, tc.want)
			}
			if code == 1 && strings.Count(strings.TrimSpace(out), "\n") > 0 && !strings.Contains(out, "Usage") {
				t.Fatalf("fatal error must be one line: %q", out)
			}
		})
	}
	if _, ok := os.LookupEnv("FIREZONE_TOKEN"); ok && os.Getenv("FIREZONE_TOKEN") != "" {
		t.Fatal("token left in the environment")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "logs", "gozone-client.log")); err != nil || !strings.Contains(string(b), "configuration is valid") {
		t.Fatalf("log dir: %q %v", b, err)
	}
}

// TestNoNetAdmin: without root or CAP_NET_ADMIN the client exits 1 with the
// exact fix in its one-line message.
func TestNoNetAdmin(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to drop privileges (CI must run as root)")
		}
		t.Skip("needs root to drop privileges")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed")
	}
	// testproc builds into a directory any user may enter (0755).
	bin := testproc.Build(t, ".")
	dir := filepath.Dir(bin)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		bin, "--dns-control", "disabled")
	cmd.Dir = dir
	cmd.Env = []string{"FIREZONE_TOKEN=t", "FIREZONE_ID=x", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, output %q", err, out)
	}
	want := "gozone-client: needs root or CAP_NET_ADMIN: run it as root, or grant the capability with: sudo setcap cap_net_admin+eip " + bin + "\n"
	if string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}

func TestParseFlagsDefaultsAndEnv(t *testing.T) {
	t.Setenv("FIREZONE_DNS_CONTROL", "etc-resolv-conf")
	t.Setenv("FIREZONE_ACTIVATE_INTERNET_RESOURCE", "true")
	t.Setenv("FIREZONE_API_URL", "ws://127.0.0.1:1")
	t.Setenv("MAX_PARTITION_TIME", "")
	var out bytes.Buffer
	c, err := parseFlags([]string{"-m", "2d", "--firezone-name", "n1"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if c.maxPartition != 48*time.Hour || c.dnsControl != "etc-resolv-conf" || !c.activateInternet ||
		c.apiURL != "ws://127.0.0.1:1" || c.name != "n1" || c.tunName != "tun-firezone" || c.tokenPath != "/etc/dev.firezone.client/token" {
		t.Fatalf("%+v", c)
	}
}
