package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gozone/gozone/internal/testproc"
)

// TestMain removes the binaries the tests built (testproc.Build).
func TestMain(m *testing.M) { testproc.Main(m) }

func TestNoToken(t *testing.T) {
	t.Setenv("FIREZONE_TOKEN", "")
	t.Setenv("CREDENTIALS_DIRECTORY", t.TempDir())
	var out bytes.Buffer
	code := run([]string{"--no-check", "--id-file", t.TempDir() + "/id"}, &out)
	if code != 1 || !strings.Contains(out.String(), "FIREZONE_TOKEN") || strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--tun-threads", "0"},
		{"--listen-port", "70000"},
		{"--log-format", "xml", "--no-check", "tok"},
		{"a", "b"},
	} {
		var out bytes.Buffer
		if code := run(args, &out); code != 1 {
			t.Errorf("%v: exit %d (%s)", args, code, out.String())
		}
	}
	t.Setenv("FIREZONE_NUM_TUN_THREADS", "many")
	var out bytes.Buffer
	if code := run(nil, &out); code != 1 || !strings.Contains(out.String(), "FIREZONE_NUM_TUN_THREADS") {
		t.Fatalf("bad env: %d %q", code, out.String())
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Setenv("FIREZONE_API_URL", "ws://portal.test")
	t.Setenv("FIREZONE_MAX_PARTITION_TIME", "2d")
	o, err := parseOptions([]string{"--tun-threads", "3", "tok"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.token != "tok" || o.apiURL != "ws://portal.test" || o.tunThreads != 3 || o.maxPartition.Hours() != 48 || o.tunName != "tun-firezone" {
		t.Fatalf("%+v", o)
	}
	o, _ = parseOptions(nil, &bytes.Buffer{})
	if o.tunThreads != 2 {
		t.Fatalf("default tun threads %d", o.tunThreads)
	}
}
