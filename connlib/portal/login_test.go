package portal

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

const testPub = "fiAjBY+Lr0Ih1oxGjUzMSs5UUkLOl8spg5oZtmmsLWY="

func TestLoginURL(t *testing.T) {
	u, err := GatewayURL("https://portal.example.com/", LoginParams{ExternalID: "abc", Name: "gw 1", PublicKey: testPub, DeviceSerial: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	want := "wss://portal.example.com/gateway/v2/websocket?external_id=abc&name=gw+1&public_key=fiAjBY%2BLr0Ih1oxGjUzMSs5UUkLOl8spg5oZtmmsLWY%3D"
	if u.String() != want {
		t.Fatalf("got  %s\nwant %s", u, want)
	}
	u, err = ClientURL("http://127.0.0.1:8080", LoginParams{ExternalID: "e", Name: "n", PublicKey: testPub, DeviceSerial: "S", DeviceUUID: "U"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "ws" || u.Path != "/client/v2/websocket" ||
		u.RawQuery != "external_id=e&name=n&device_serial=S&device_uuid=U&public_key=fiAjBY%2BLr0Ih1oxGjUzMSs5UUkLOl8spg5oZtmmsLWY%3D" {
		t.Fatalf("got %s", u)
	}
	if q := u.Query(); q.Get("public_key") != testPub {
		t.Fatalf("public_key round trip: %q", q.Get("public_key"))
	}
	for _, bad := range []struct{ api, key string }{{"ftp://x", testPub}, {"wss://", testPub}, {"wss://x", "short"}, {"wss://x", strings.Repeat("!", 44)}} {
		if _, err := ClientURL(bad.api, LoginParams{PublicKey: bad.key}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := GatewayURL("wss://x", LoginParams{PublicKey: "abc"}); !errors.Is(err, ErrBadPublicKey) {
		t.Errorf("err %v", err)
	}
}

func TestExternalID(t *testing.T) {
	id := "6c7e3d4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	h := sha256.Sum256([]byte(id))
	if got := ExternalID(id); got != hex.EncodeToString(h[:]) {
		t.Fatalf("uuid: %s", got)
	}
	for _, u := range []string{"6C7E3D4A-1B2C-4D5E-8F90-A1B2C3D4E5F6", "6c7e3d4a1b2c4d5e8f90a1b2c3d4e5f6", "{6c7e3d4a-1b2c-4d5e-8f90-a1b2c3d4e5f6}", "urn:uuid:6c7e3d4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"} {
		if ExternalID(u) == u || len(ExternalID(u)) != 64 {
			t.Errorf("%s not hashed", u)
		}
	}
	for _, v := range []string{"my-gateway", "", "6c7e3d4a-1b2c-4d5e-8f90-a1b2c3d4e5fg", strings.Repeat("ab", 32)} {
		if ExternalID(v) != v {
			t.Errorf("%q changed", v)
		}
	}
}

func TestUserAgent(t *testing.T) {
	got := UserAgent(OSInfo{"Ubuntu", "24.04", "x86_64", "6.8.0-45-generic"}, ComponentGateway, "1.6.1")
	if got != "Ubuntu/24.04 gateway/1.6.1 (x86_64; 6.8.0-45-generic)" {
		t.Fatal(got)
	}
	got = UserAgent(OSInfo{Type: "Débian\x00", Arch: "aarch64"}, ComponentHeadlessClient, "1.5.12")
	if got != "Dbian/unknown headless-client/1.5.12 (aarch64; unknown)" {
		t.Fatal(got)
	}
	name, ver := parseOSRelease(bufio.NewScanner(strings.NewReader("PRETTY_NAME=\"Debian GNU/Linux 12\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n")))
	if name != "Debian" || ver != "12" {
		t.Fatal(name, ver)
	}
	if h := HostOSInfo(); h.Arch == "" {
		t.Fatal("no arch from uname")
	}
}

func TestParamsOrderAndChannelURLs(t *testing.T) {
	ps := LoginParams{ExternalID: "e", Name: "n", PublicKey: testPub, DeviceUUID: "u"}.Params()
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	if strings.Join(keys, ",") != "external_id,name,device_uuid,public_key" {
		t.Fatal(keys)
	}
	if GatewayChannelURL("wss://x/") != "wss://x/gateway/v2" || ClientChannelURL("http://x") != "http://x/client/v2" {
		t.Fatal("channel urls")
	}
}
