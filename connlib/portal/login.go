package portal

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/gozone/gozone/phoenix"
)

// WebSocket paths of the device channels (v2 event names).
const (
	GatewayPath = "/gateway/v2/websocket"
	ClientPath  = "/client/v2/websocket"
)

// DefaultAPIURL is Firezone's public portal.
const DefaultAPIURL = "wss://api.firezone.dev"

// ErrBadPublicKey is returned for a public key that is not 44 characters of
// standard base64 (a 32-byte X25519 key).
var ErrBadPublicKey = errors.New("portal: public_key must be 44 chars of standard base64 (32 bytes)")

// LoginParams are the query parameters a device sends when it connects.
// The hardware ids are sent by clients only, and only when non-empty.
type LoginParams struct {
	ExternalID string
	Name       string
	PublicKey  string // base64 standard with padding; appended last, at every (re)connect

	DeviceSerial           string
	DeviceUUID             string
	IdentifierForVendor    string
	FirebaseInstallationID string
}

// Channel base URLs (without "/websocket"), as phoenix.ClientConfig.URL
// takes them.
const (
	GatewayChannelPath = "/gateway/v2"
	ClientChannelPath  = "/client/v2"
)

// GatewayChannelURL is apiURL + "/gateway/v2", for phoenix.ClientConfig.URL.
func GatewayChannelURL(apiURL string) string {
	return strings.TrimSuffix(apiURL, "/") + GatewayChannelPath
}

// ClientChannelURL is apiURL + "/client/v2", for phoenix.ClientConfig.URL.
func ClientChannelURL(apiURL string) string {
	return strings.TrimSuffix(apiURL, "/") + ClientChannelPath
}

// Params lists the query parameters in connlib's order (reference §4.1):
// external_id, name, the client hardware ids, public_key last; empty
// values are left out. Use it as phoenix.ClientConfig.Params (called at
// every reconnect, so a new public key is picked up).
func (p LoginParams) Params() []phoenix.Param {
	out := make([]phoenix.Param, 0, 7)
	for _, kv := range [...]phoenix.Param{
		{Key: "external_id", Value: p.ExternalID},
		{Key: "name", Value: p.Name},
		{Key: "device_serial", Value: p.DeviceSerial},
		{Key: "device_uuid", Value: p.DeviceUUID},
		{Key: "identifier_for_vendor", Value: p.IdentifierForVendor},
		{Key: "firebase_installation_id", Value: p.FirebaseInstallationID},
		{Key: "public_key", Value: p.PublicKey},
	} {
		if kv.Value != "" {
			out = append(out, kv)
		}
	}
	return out
}

// GatewayURL builds the gateway's full connect URL (http→ws, https→wss).
// The hardware ids are never sent by gateways.
func GatewayURL(apiURL string, p LoginParams) (*url.URL, error) {
	p.DeviceSerial, p.DeviceUUID, p.IdentifierForVendor, p.FirebaseInstallationID = "", "", "", ""
	return loginURL(apiURL, GatewayChannelURL(apiURL), p)
}

// ClientURL builds the client's full connect URL.
func ClientURL(apiURL string, p LoginParams) (*url.URL, error) {
	return loginURL(apiURL, ClientChannelURL(apiURL), p)
}

func loginURL(apiURL, base string, p LoginParams) (*url.URL, error) {
	if u, err := url.Parse(apiURL); err != nil || u.Host == "" {
		return nil, fmt.Errorf("portal: api url %q has no host", apiURL)
	}
	if err := CheckPublicKey(p.PublicKey); err != nil {
		return nil, err
	}
	u, err := phoenix.BuildURL(base, p.Params())
	if err != nil {
		return nil, fmt.Errorf("portal: api url: %w", err)
	}
	return u, nil
}

// CheckPublicKey validates a WireGuard public key as the portal does.
func CheckPublicKey(k string) error {
	if len(k) != 44 {
		return ErrBadPublicKey
	}
	if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
		return ErrBadPublicKey
	}
	return nil
}

// ExternalID derives the external_id query parameter from FIREZONE_ID:
// hex(SHA-256(id)) when id parses as a UUID, else id verbatim (reference
// §4.1). The hash keeps hardware-derived UUIDs out of the portal's logs.
func ExternalID(firezoneID string) string {
	if isUUID(firezoneID) {
		h := sha256.Sum256([]byte(firezoneID))
		return hex.EncodeToString(h[:])
	}
	return firezoneID
}

// isUUID accepts the textual UUID forms a UUID parser accepts: hyphenated,
// 32 hex digits, {braced} and urn:uuid:.
func isUUID(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "urn:uuid:"), "URN:UUID:")
	if len(s) == 38 && s[0] == '{' && s[37] == '}' {
		s = s[1:37]
	}
	switch len(s) {
	case 32:
		_, err := hex.DecodeString(s)
		return err == nil
	case 36:
		for i, c := range []byte(s) {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if c != '-' {
					return false
				}
				continue
			}
			if !isHex(c) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
