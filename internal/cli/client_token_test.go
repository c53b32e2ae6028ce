package cli

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestClientTokenFromEnvIsRemoved(t *testing.T) {
	t.Setenv(TokenEnv, "  secret-token \n")
	tok, err := ClientToken("/nonexistent")
	if err != nil || tok != "secret-token" {
		t.Fatalf("%q %v", tok, err)
	}
	if _, ok := os.LookupEnv(TokenEnv); ok {
		t.Fatal("token still in the environment")
	}
}

func TestClientTokenFile(t *testing.T) {
	t.Setenv(TokenEnv, "")
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if _, err := ClientToken(p); !errors.Is(err, ErrNoClientToken) {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientToken(p); !errors.Is(err, ErrNoClientToken) {
		t.Fatalf("empty file: %v", err)
	}
	if err := os.WriteFile(p, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ClientToken(p); err != nil || tok != "file-token" {
		t.Fatalf("%q %v", tok, err)
	}
	// A directory cannot be read as a file: an error, not "no token".
	if _, err := ClientToken(dir); err == nil || errors.Is(err, ErrNoClientToken) {
		t.Fatalf("unreadable file: %v", err)
	}
}

func TestLoadOrCreateClientID(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "firezone-id.json")
	id, err := LoadOrCreateClientID(p)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("%q %v", id, err)
	}
	again, err := LoadOrCreateClientID(p)
	if err != nil || again != id {
		t.Fatalf("not persisted: %q %v", again, err)
	}
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateClientID(p); err == nil {
		t.Fatal("garbage accepted")
	}
}
