package devportal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// refPrefix mimics a Phoenix.Token ("HS256" in base64) so refs look like
// the portal's; devices treat them as opaque.
const refPrefix = "SFMyNTY."

// ErrInvalidRef is returned for a ref that was not signed by this portal
// or was altered.
var ErrInvalidRef = errors.New("invalid_ref")

// refClaims is what a signed ref carries: enough to check that the
// gateway answering is the one that was asked.
type refClaims struct {
	ID         string `json:"id"`
	ClientID   string `json:"c"`
	GatewayID  string `json:"g"`
	ResourceID string `json:"r"`
}

func signRef(key []byte, c refClaims) string {
	body, _ := json.Marshal(c)
	b := base64.RawURLEncoding.EncodeToString(body)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(b))
	return refPrefix + b + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func verifyRef(key []byte, ref string) (refClaims, error) {
	rest, ok := strings.CutPrefix(ref, refPrefix)
	if !ok {
		return refClaims{}, ErrInvalidRef
	}
	b, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return refClaims{}, ErrInvalidRef
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return refClaims{}, ErrInvalidRef
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(b))
	if !hmac.Equal(got, m.Sum(nil)) {
		return refClaims{}, ErrInvalidRef
	}
	body, err := base64.RawURLEncoding.DecodeString(b)
	if err != nil {
		return refClaims{}, ErrInvalidRef
	}
	var c refClaims
	if json.Unmarshal(body, &c) != nil {
		return refClaims{}, ErrInvalidRef
	}
	return c, nil
}
