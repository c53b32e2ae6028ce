package devportal

import (
	"os"
	"testing"
)

// FuzzParseConfig: any bytes give a config or an error, never a panic, and
// an accepted config compiles.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validYAML))
	if b, err := os.ReadFile("portal.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		m := compile(c)
		for _, a := range m.actors {
			for _, r := range m.visible(a) {
				_ = m.clientResource(r)
				_ = r.gatewayResource()
			}
		}
	})
}

// FuzzVerifyRef: refs come from gateways; only signed ones verify.
func FuzzVerifyRef(f *testing.F) {
	key := []byte("fuzz-key")
	f.Add(signRef(key, refClaims{ID: "1", ClientID: "c", GatewayID: "g", ResourceID: "r"}))
	f.Add("SFMyNTY.e30.AAAA")
	f.Fuzz(func(t *testing.T, ref string) {
		c, err := verifyRef(key, ref)
		if err == nil && signRef(key, c) != ref {
			// A verified ref must be exactly what we would have signed
			// for its claims (up to JSON re-encoding of the same claims).
			if _, err2 := verifyRef(key, signRef(key, c)); err2 != nil {
				t.Fatalf("re-signed ref does not verify")
			}
		}
	})
}
