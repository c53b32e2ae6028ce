package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TokenEnv is the environment variable (and systemd credential name) that
// carries the portal token.
const TokenEnv = "FIREZONE_TOKEN"

// ErrNoToken is returned by Token when no token was found anywhere. Its
// message names the variable, so a binary can print it as is.
var ErrNoToken = errors.New("no token: set " + TokenEnv + " (environment), pass it as the argument, or provide the systemd credential " + TokenEnv)

// Token finds the portal token (reference §6.1): arg (the positional
// argument) first, then the environment variable FIREZONE_TOKEN, then
// $CREDENTIALS_DIRECTORY/FIREZONE_TOKEN (systemd LoadCredential), trimmed.
// getenv nil means os.Getenv.
func Token(arg string, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if t := strings.TrimSpace(arg); t != "" {
		return t, nil
	}
	if t := strings.TrimSpace(getenv(TokenEnv)); t != "" {
		return t, nil
	}
	if dir := getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, TokenEnv))
		if err == nil {
			if t := strings.TrimSpace(string(b)); t != "" {
				return t, nil
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("reading credential %s: %w", TokenEnv, err)
		}
	}
	return "", ErrNoToken
}
