package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	devportal "github.com/gozone/gozone/examples/portal"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const cfg = `
account: {slug: acme}
sites: [{name: hq, gateway_tokens: ["gw-secret-token-0123456789"]}]
actors: [{name: alice, groups: [eng], tokens: ["client-secret-token-012345"]}]
resources: [{name: web, type: cidr, address: 10.0.0.0/8, sites: [hq]}]
policies: [{group: eng, resource: web}]
relays: {builtin: {enabled: true}}
`

func TestRunServesReloadsAndStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portal.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	sigs := make(chan os.Signal, 1)
	ready := make(chan *devportal.Portal, 1)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--config", path, "--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0", "--log-format", "json"}, &out, sigs, ready)
	}()
	var p *devportal.Portal
	select {
	case p = <-ready:
	case c := <-code:
		t.Fatalf("exited %d: %s", c, out.String())
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	resp, err := http.Get(strings.Replace(p.URL(), "ws://", "http://", 1) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var st devportal.Status
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || st.Status != "ok" {
		t.Fatalf("healthz %d %+v", resp.StatusCode, st)
	}

	// SIGHUP with a broken file: logged, portal keeps running.
	if err := os.WriteFile(path, []byte(strings.Replace(cfg, "10.0.0.0/8", "10.0.0.0/99", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs <- syscall.SIGHUP
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "resources[0].address") {
		if time.Now().After(deadline) {
			t.Fatalf("reload error not logged: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sigs <- syscall.SIGTERM
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop")
	}
	// Structured JSON logs, no tokens.
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
	}
	if strings.Contains(out.String(), "secret-token") {
		t.Fatal("a token was logged")
	}
}

func TestRunRejectsBadConfigAndUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portal.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(cfg, "type: cidr", "type: galaxy", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	if c := run([]string{"--config", path, "--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"}, &out, nil, nil); c != 1 {
		t.Fatalf("exit %d", c)
	}
	if !strings.Contains(out.String(), "resources[0].type") {
		t.Fatalf("error does not name the field: %s", out.String())
	}
	if c := run(nil, &out, nil, nil); c != 2 {
		t.Fatalf("no --config: exit %d", c)
	}
	if c := run([]string{"--config", path, "--log-format", "xml"}, &out, nil, nil); c != 2 {
		t.Fatalf("bad log format: exit %d", c)
	}
}
