package cli

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenOrder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TokenEnv), []byte("  cred-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if _, err := Token("", get); !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "FIREZONE_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
	env["CREDENTIALS_DIRECTORY"] = dir
	if tok, err := Token("", get); err != nil || tok != "cred-token" {
		t.Fatalf("credential: %q %v", tok, err)
	}
	env[TokenEnv] = "env-token"
	if tok, _ := Token("", get); tok != "env-token" {
		t.Fatalf("env: %q", tok)
	}
	if tok, _ := Token(" arg-token ", get); tok != "arg-token" {
		t.Fatalf("arg: %q", tok)
	}
}

func TestLoadOrCreateID(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "gateway_id")
	id, err := LoadOrCreateID(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 64 {
		t.Fatalf("id %q: want 64 hex chars", id)
	}
	again, err := LoadOrCreateID(p)
	if err != nil || again != id {
		t.Fatalf("second load %q %v, want %q", again, err, id)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateID(p); err == nil {
		t.Fatal("empty id file accepted")
	}
}

func TestCapabilityParse(t *testing.T) {
	dir := t.TempDir()
	write := func(eff string) string {
		p := filepath.Join(dir, eff)
		os.WriteFile(p, []byte("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t"+eff+"\n"), 0o644)
		return p
	}
	if ok, err := hasEffectiveCap(write("0000000000001000"), capNetAdmin); err != nil || !ok {
		t.Fatalf("net_admin bit set: %v %v", ok, err)
	}
	if ok, err := hasEffectiveCap(write("0000000000000400"), capNetAdmin); err != nil || ok {
		t.Fatalf("net_admin bit clear: %v %v", ok, err)
	}
	if os.Geteuid() == 0 {
		if err := CheckNetAdmin("/x/gateway"); err != nil {
			t.Fatalf("root: %v", err)
		}
	}
}

func TestCapabilityMessage(t *testing.T) {
	err := errorForNoCap("/usr/bin/gozone-gateway")
	if !errors.Is(err, ErrNoNetAdmin) || !strings.Contains(err.Error(), "sudo setcap cap_net_admin+eip /usr/bin/gozone-gateway") {
		t.Fatalf("message: %v", err)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(LogFormatJSON, "debug,snownet=trace", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hello")
	if !strings.Contains(buf.String(), `"msg":"hello"`) {
		t.Fatalf("json output %q", buf.String())
	}
	if _, err := NewLogger("xml", "", nil); err == nil {
		t.Fatal("bad format accepted")
	}
	if _, err := NewLogger("", "loud", nil); err == nil {
		t.Fatal("bad level accepted")
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("GOZONE_T_DUR", "1d 2h")
	if d, err := EnvDuration("GOZONE_T_DUR", 0); err != nil || d != 26*time.Hour {
		t.Fatalf("duration %v %v", d, err)
	}
	t.Setenv("GOZONE_T_DUR", "soon")
	if _, err := EnvDuration("GOZONE_T_DUR", 0); err == nil {
		t.Fatal("bad duration accepted")
	}
	t.Setenv("GOZONE_T_INT", "x")
	if _, err := EnvInt("GOZONE_T_INT", 2); err == nil {
		t.Fatal("bad int accepted")
	}
	t.Setenv("GOZONE_T_BOOL", "yes")
	if b, err := EnvBool("GOZONE_T_BOOL", false); err != nil || !b {
		t.Fatal("bool")
	}
}

func TestHealth(t *testing.T) {
	var ready atomic.Bool
	h, err := StartHealth("127.0.0.1:0", ready.Load)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func(path string) int {
		r, err := http.Get("http://" + h.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return r.StatusCode
	}
	if get("/healthz") != 200 || get("/readyz") != 503 {
		t.Fatal("before ready")
	}
	ready.Store(true)
	if get("/readyz") != 200 {
		t.Fatal("after ready")
	}
}
