package phoenix

import (
	"net/url"
	"strings"
	"testing"
)

func TestBuildURL(t *testing.T) {
	tests := []struct{ base, want string }{
		{"https://api.firezone.dev/gateway/v2", "wss://api.firezone.dev/gateway/v2/websocket?external_id=abc&name=my+gw&public_key=a%2Fb%2Bc%3D"},
		{"http://127.0.0.1:8080/client/v2/", "ws://127.0.0.1:8080/client/v2/websocket?external_id=abc&name=my+gw&public_key=a%2Fb%2Bc%3D"},
		{"wss://h/x/websocket?pre=1", "wss://h/x/websocket?pre=1&external_id=abc&name=my+gw&public_key=a%2Fb%2Bc%3D"},
	}
	params := []Param{{"external_id", "abc"}, {"name", "my gw"}, {"public_key", "a/b+c="}}
	for _, tt := range tests {
		u, err := BuildURL(tt.base, params)
		if err != nil {
			t.Fatalf("%s: %v", tt.base, err)
		}
		if u.String() != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.base, u, tt.want)
		}
	}
	for _, bad := range []string{"ftp://h/x", "://", "https://"} {
		if _, err := BuildURL(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRedactURL(t *testing.T) {
	u, _ := url.Parse("wss://user:pw@h/x/websocket?external_id=1&token=SECRET&Token=S2&public_key=k")
	got := RedactURL(u)
	if strings.Contains(got, "SECRET") || strings.Contains(got, "S2") || strings.Contains(got, "pw") {
		t.Fatalf("secret left in %s", got)
	}
	if !strings.Contains(got, "external_id=1") || !strings.Contains(got, "public_key=k") {
		t.Fatalf("other params lost: %s", got)
	}
	err := redactErr(errStr(`Get "http://h/x?a=1&token=SECRET": dial tcp: refused`))
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("token in error: %v", err)
	}
}

type errStr string

func (e errStr) Error() string { return string(e) }

func TestUserAgent(t *testing.T) {
	got := UserAgent("Ubuntu", "24.04", "gateway", "1.6.1", "x86_64", "6.8.0-45-generic")
	if want := "Ubuntu/24.04 gateway/1.6.1 (x86_64; 6.8.0-45-generic)"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if got := UserAgent("Débian", "13", "headless-client", "1.5.12", "aarch64", "6.1\n"); got != "Dbian/13 headless-client/1.5.12 (aarch64; 6.1)" {
		t.Errorf("non-ASCII not stripped: %q", got)
	}
}
