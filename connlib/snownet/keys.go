package snownet

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// KeySize is the size of WireGuard keys.
const KeySize = 32

// ErrBadKey is returned for keys that do not decode to 32 bytes.
var ErrBadKey = errors.New("snownet: key must be 32 bytes")

// Key is a WireGuard (Curve25519) key or preshared key.
type Key [KeySize]byte

// GeneratePrivateKey returns a new clamped Curve25519 private key.
func GeneratePrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, err
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// PublicKey derives the public key of private key k.
func (k Key) PublicKey() Key {
	var pub Key
	p, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		return Key{} // only for low-order results, impossible for a clamped key
	}
	copy(pub[:], p)
	return pub
}

// IsZero reports whether k is all zeros.
func (k Key) IsZero() bool { return k == Key{} }

// String is the base64 form the portal uses.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

func (k Key) hex() string { return hex.EncodeToString(k[:]) }

// ParseKey decodes a base64 key.
func ParseKey(s string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if len(b) != KeySize {
		return Key{}, ErrBadKey
	}
	var k Key
	copy(k[:], b)
	return k, nil
}
