package devportal

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/gozone/gozone/connlib/portal"
)

// Derivations of reference §2.2. They are pure functions of the ids and
// public keys (and the PSK bases), so both ends of a connection get the
// same values from the portal, and they stay stable while the keys do.

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ICECredentials derives both sides' ICE credentials: SHA-256 of
// "<initiator_id>:<initiator_pk>:<receiver_id>:<receiver_pk>" in lowercase
// base32 without padding (52 chars); the initiator gets ufrag [0,4) and
// password [4,26), the receiver ufrag [26,30) and password [30,52).
func ICECredentials(initiatorID, initiatorKey, receiverID, receiverKey string) (initiator, receiver portal.ICECredentials) {
	h := sha256.Sum256([]byte(initiatorID + ":" + initiatorKey + ":" + receiverID + ":" + receiverKey))
	s := lowerBase32.EncodeToString(h[:])
	return portal.ICECredentials{Username: s[0:4], Password: s[4:26]},
		portal.ICECredentials{Username: s[26:30], Password: s[30:52]}
}

// GatewayPSK derives the WireGuard pre-shared key of a client–gateway
// connection: PBKDF2-HMAC-SHA256 with secret clientBase||gatewayBase, salt
// "WG_PSK|C_ID:<cid>|G_ID:<gid>|C_PK:<cpk>|G_PK:<gpk>", 1 iteration, 32
// bytes, base64.
func GatewayPSK(clientBase, gatewayBase []byte, clientID, gatewayID, clientKey, gatewayKey string) string {
	salt := "WG_PSK|C_ID:" + clientID + "|G_ID:" + gatewayID + "|C_PK:" + clientKey + "|G_PK:" + gatewayKey
	return psk(clientBase, gatewayBase, salt)
}

// ClientPSK is the client-to-client variant (salt "WG_PSK_CC|CA_ID:…|CB_ID:…|CA_PK:…|CB_PK:…").
func ClientPSK(aBase, bBase []byte, aID, bID, aKey, bKey string) string {
	salt := "WG_PSK_CC|CA_ID:" + aID + "|CB_ID:" + bID + "|CA_PK:" + aKey + "|CB_PK:" + bKey
	return psk(aBase, bBase, salt)
}

func psk(a, b []byte, salt string) string {
	secret := make([]byte, 0, len(a)+len(b))
	secret = append(append(secret, a...), b...)
	k, err := pbkdf2.Key(sha256.New, string(secret), []byte(salt), 1, 32)
	if err != nil {
		// Only possible for FIPS-mode restrictions on key length; 32
		// bytes and SHA-256 are always allowed.
		panic(fmt.Sprintf("pbkdf2: %v", err))
	}
	return base64.StdEncoding.EncodeToString(k)
}

// pskBase is a device's stable PSK base: HMAC(secret, "psk_base|<id>").
// Firezone stores a random one per device; deriving it keeps this portal
// stateless across restarts when the secret is configured.
func pskBase(secret []byte, deviceID string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("psk_base|" + deviceID))
	return m.Sum(nil)
}

// derivedUUID makes a stable UUID (version 8, RFC 9562 custom) from a
// name, so configuration objects and devices keep their ids across
// reloads and restarts.
func derivedUUID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
