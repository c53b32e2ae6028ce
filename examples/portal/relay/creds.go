package relay

// Firezone's relay credential scheme (reference §5): what the portal hands
// devices and what the relay checks.

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Realm is the only realm Firezone devices accept.
const Realm = "firezone"

// GatewayCredentialExpiry is the fixed expiry (2038-01-01) the portal uses
// for gateways' relay credentials so they stay stable across reconnects.
const GatewayCredentialExpiry int64 = 2145916800

// Credential errors. ErrBadUsername and ErrExpired are returned by Verify.
var (
	ErrBadUsername = errors.New("relay: username is not <expiry>:<salt>")
	ErrExpired     = errors.New("relay: credentials expired")
)

// Salt is base64-no-pad(SHA-256(public key as its base64 text)).
func Salt(publicKey string) string {
	h := sha256.Sum256([]byte(publicKey))
	return base64.RawStdEncoding.EncodeToString(h[:])
}

// Credentials mints a device's relay username and password: username
// "<expires>:<salt>", password base64-no-pad(SHA-256("<expires>:<secret>:<salt>")).
// secret is the relay's secret (hex text, as the relay sends it as
// stamp_secret).
func Credentials(secret, publicKey string, expiresUnix int64) (username, password string) {
	username = strconv.FormatInt(expiresUnix, 10) + ":" + Salt(publicKey)
	return username, password0(secret, username)
}

func password0(secret, username string) string {
	exp, salt, _ := strings.Cut(username, ":")
	h := sha256.Sum256([]byte(exp + ":" + secret + ":" + salt))
	return base64.RawStdEncoding.EncodeToString(h[:])
}

// Password recomputes the password of username, refusing malformed or
// expired usernames. This is all a relay needs: it never stores
// credentials.
func Password(secret, username string, now time.Time) (string, error) {
	exp, salt, ok := strings.Cut(username, ":")
	if !ok || salt == "" {
		return "", ErrBadUsername
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || expires < 0 {
		return "", fmt.Errorf("%w: expiry %q", ErrBadUsername, exp)
	}
	if expires < now.Unix() {
		return "", ErrExpired
	}
	return password0(secret, username), nil
}
