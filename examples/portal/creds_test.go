package devportal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"strings"
	"testing"
)

func TestICECredentials(t *testing.T) {
	ci, gi := ICECredentials("cid", "cpk=", "gid", "gpk=")
	sum := sha256.Sum256([]byte("cid:cpk=:gid:gpk="))
	s := strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:]), "="))
	if len(s) != 52 {
		t.Fatalf("len %d", len(s))
	}
	if ci.Username != s[:4] || ci.Password != s[4:26] || gi.Username != s[26:30] || gi.Password != s[30:] {
		t.Fatalf("slices wrong: %+v %+v from %s", ci, gi, s)
	}
	if len(ci.Password) != 22 || len(gi.Password) != 22 {
		t.Fatalf("password lengths %d %d", len(ci.Password), len(gi.Password))
	}
	ci2, gi2 := ICECredentials("cid", "cpk=", "gid", "gpk=")
	if ci2 != ci || gi2 != gi {
		t.Fatal("not stable")
	}
	ci3, _ := ICECredentials("cid", "other=", "gid", "gpk=")
	if ci3 == ci {
		t.Fatal("a new key must give new credentials")
	}
}

// pbkdf2One is PBKDF2-HMAC-SHA256 with one iteration and 32 bytes, which
// is a single HMAC: U1 = HMAC(secret, salt || INT(1)).
func pbkdf2One(secret []byte, salt string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(salt))
	m.Write([]byte{0, 0, 0, 1})
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestPSK(t *testing.T) {
	cb, gb := []byte("client-base"), []byte("gateway-base")
	got := GatewayPSK(cb, gb, "c1", "g1", "cpk", "gpk")
	want := pbkdf2One([]byte("client-basegateway-base"), "WG_PSK|C_ID:c1|G_ID:g1|C_PK:cpk|G_PK:gpk")
	if got != want {
		t.Fatalf("psk %s want %s", got, want)
	}
	if b, _ := base64.StdEncoding.DecodeString(got); len(b) != 32 {
		t.Fatal("psk not 32 bytes")
	}
	if ClientPSK(cb, gb, "a", "b", "ka", "kb") != pbkdf2One([]byte("client-basegateway-base"), "WG_PSK_CC|CA_ID:a|CB_ID:b|CA_PK:ka|CB_PK:kb") {
		t.Fatal("c2c psk")
	}
	if GatewayPSK(cb, gb, "c1", "g1", "cpk2", "gpk") == got {
		t.Fatal("psk must depend on keys")
	}
}

func TestRefs(t *testing.T) {
	key := []byte("k")
	c := refClaims{ID: "1", ClientID: "c", GatewayID: "g", ResourceID: "r"}
	ref := signRef(key, c)
	if !strings.HasPrefix(ref, refPrefix) {
		t.Fatal(ref)
	}
	got, err := verifyRef(key, ref)
	if err != nil || got != c {
		t.Fatalf("%+v %v", got, err)
	}
	bad := []string{"", "x", refPrefix, refPrefix + "a.b", ref + "x", strings.Replace(ref, refPrefix, "", 1)}
	body := strings.TrimPrefix(ref, refPrefix)
	b, sig, _ := strings.Cut(body, ".")
	forged := signRef([]byte("other"), c)
	bad = append(bad, forged, refPrefix+b[:len(b)-2]+"AA."+sig)
	for _, r := range bad {
		if _, err := verifyRef(key, r); err == nil {
			t.Errorf("%q verified", r)
		}
	}
}

func TestDerivedUUID(t *testing.T) {
	a := derivedUUID("acme", "site", "hq")
	if !uuidRE.MatchString(a) || a != derivedUUID("acme", "site", "hq") || a == derivedUUID("acme", "site", "hq2") {
		t.Fatal(a)
	}
	if derivedUUID("ab", "c") == derivedUUID("a", "bc") {
		t.Fatal("parts must be separated")
	}
}

func BenchmarkAuthorizationCredentials(b *testing.B) {
	cb, gb := pskBase([]byte("s"), "c"), pskBase([]byte("s"), "g")
	b.ReportAllocs()
	for b.Loop() {
		ICECredentials("c", "cpk", "g", "gpk")
		GatewayPSK(cb, gb, "c", "g", "cpk", "gpk")
	}
}
