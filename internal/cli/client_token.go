package cli

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Headless-client defaults (reference §6.2).
const (
	DefaultClientTokenPath = "/etc/dev.firezone.client/token"
	DefaultClientIDPath    = "/var/lib/dev.firezone.client/config/firezone-id.json"
)

// ErrNoClientToken is returned by ClientToken when neither the environment
// nor the token file holds a token.
var ErrNoClientToken = errors.New("no token: set " + TokenEnv + " or write the token to the file given by --token-path")

// ClientToken finds the headless client's token (reference §6.2):
// FIREZONE_TOKEN first, which is then removed from the environment so child
// processes and /proc/<pid>/environ readers of later exec'd helpers do not
// see it; otherwise the file at tokenPath, trimmed. A missing file is
// ErrNoClientToken; an unreadable one an error naming the path.
func ClientToken(tokenPath string) (string, error) {
	if t := strings.TrimSpace(os.Getenv(TokenEnv)); t != "" {
		_ = os.Unsetenv(TokenEnv)
		return t, nil
	}
	_ = os.Unsetenv(TokenEnv)
	if tokenPath == "" {
		return "", ErrNoClientToken
	}
	b, err := os.ReadFile(tokenPath)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w (%s does not exist)", ErrNoClientToken, tokenPath)
	}
	if err != nil {
		return "", fmt.Errorf("reading the token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%w (%s is empty)", ErrNoClientToken, tokenPath)
	}
	return t, nil
}

// clientIDFile is the JSON the client keeps its id in.
type clientIDFile struct {
	ID string `json:"id"`
}

// LoadOrCreateClientID returns the id stored in the JSON file at path
// ({"id":"<uuid>"}), creating the file with a random UUIDv4 when it does
// not exist, so the portal sees the same device across restarts. A file
// that exists but does not hold an id is an error, never silently
// replaced.
func LoadOrCreateClientID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		var f clientIDFile
		if err := json.Unmarshal(b, &f); err != nil || strings.TrimSpace(f.ID) == "" {
			return "", fmt.Errorf("device id file %s is not valid (want {\"id\":\"...\"})", path)
		}
		return strings.TrimSpace(f.ID), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the device id: %w", err)
	}
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	id := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("creating the device id directory: %w", err)
	}
	out, _ := json.Marshal(clientIDFile{ID: id})
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return "", fmt.Errorf("writing the device id: %w", err)
	}
	return id, nil
}
