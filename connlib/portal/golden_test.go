package portal

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var directions = map[string]func(string, []byte) (Message, error){
	"gateway_ingress": DecodeGatewayIngress,
	"gateway_egress":  DecodeGatewayEgress,
	"client_ingress":  DecodeClientIngress,
	"client_egress":   DecodeClientEgress,
}

// goldenFiles returns testdata/golden/<direction>/<event>[.<variant>].json.
func goldenFiles(t testing.TB) map[string][]string {
	out := map[string][]string{}
	for dir := range directions {
		files, err := filepath.Glob(filepath.Join("testdata", "golden", dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no golden files for %s: %v", dir, err)
		}
		out[dir] = files
	}
	return out
}

func eventOf(file string) string {
	base := strings.TrimSuffix(filepath.Base(file), ".json")
	ev, _, _ := strings.Cut(base, ".")
	return ev
}

func jsonEqual(t *testing.T, want, got []byte) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got: %v", err)
	}
	if !reflect.DeepEqual(w, g) {
		t.Errorf("JSON differs\nwant %s\ngot  %s", compact(want), got)
	}
}

func compact(b []byte) string {
	var m any
	_ = json.Unmarshal(b, &m)
	c, _ := json.Marshal(m)
	return string(c)
}

// TestGolden decodes every example of reference §4.3–4.4 and encodes it
// back to the same JSON.
func TestGolden(t *testing.T) {
	seen := map[string]map[string]bool{}
	for dir, files := range goldenFiles(t) {
		seen[dir] = map[string]bool{}
		for _, f := range files {
			t.Run(dir+"/"+filepath.Base(f), func(t *testing.T) {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				ev := eventOf(f)
				m, err := directions[dir](ev, b)
				if err != nil && !errors.Is(err, ErrObsolete) {
					t.Fatalf("decode: %v", err)
				}
				if m.Event != ev {
					t.Fatalf("event %q, want %q", m.Event, ev)
				}
				seen[dir][ev] = true
				out, err := json.Marshal(m.Payload)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				jsonEqual(t, b, out)
			})
		}
	}
	// Every event a decoder knows has a golden file.
	for dir, tab := range map[string]*table{"gateway_ingress": gatewayIngress, "gateway_egress": gatewayEgress,
		"client_ingress": clientIngress, "client_egress": clientEgress} {
		for ev := range tab.decoders {
			if !seen[dir][ev] && !legacyRaw[ev] {
				t.Errorf("%s: no golden file for event %q", dir, ev)
			}
		}
	}
}

// legacyRaw events carry opaque payloads we never produce.
var legacyRaw = map[string]bool{
	EventLegacyPrepareConnection: true, EventLegacyReuseConnection: true,
	EventLegacyRequestDeviceAccess: true, EventLegacyRequestConnection: true,
}

// TestGoldenSurvivesUnknownFields adds an unknown field to every object in
// every golden file; decoding must still succeed and yield the same value.
func TestGoldenSurvivesUnknownFields(t *testing.T) {
	for dir, files := range goldenFiles(t) {
		for _, f := range files {
			b, _ := os.ReadFile(f)
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			addUnknown(v)
			extended, _ := json.Marshal(v)
			ev := eventOf(f)
			if ev == EventLegacyConnectionReady || ev == EventLegacyRequestConnection {
				continue // opaque legacy payloads keep unknown fields by design
			}
			m1, err1 := directions[dir](ev, b)
			m2, err2 := directions[dir](ev, extended)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("%s: err %v vs %v", f, err1, err2)
			}
			if !reflect.DeepEqual(m1, m2) {
				t.Errorf("%s: unknown fields changed the result:\n%#v\n%#v", f, m1.Payload, m2.Payload)
			}
		}
	}
}

func addUnknown(v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			addUnknown(c)
		}
		x["some_future_field"] = map[string]any{"nested": []any{1, "two"}}
	case []any:
		for _, c := range x {
			addUnknown(c)
		}
	}
}

func TestEventNamesAndAliases(t *testing.T) {
	cases := []struct {
		dec       func(string, []byte) (Message, error)
		in, want  string
		payload   string
		wantError error
	}{
		{DecodeGatewayIngress, "authorize_flow", EventCreateAuthorization, `{"ref":"x","resource":{"id":"r","type":"cidr","address":"10.0.0.0/8"}}`, nil},
		{DecodeGatewayEgress, "flow_authorized", EventAuthorizationCreated, `{"ref":"x"}`, nil},
		{DecodeClientIngress, "flow_created", EventAuthorizationCreated, `{}`, nil},
		{DecodeClientIngress, "flow_creation_failed", EventAuthorizationCreationFailed, `{"resource_id":"r","reason":"something_new"}`, nil},
		{DecodeClientIngress, "gateway_ice_candidates", EventIceCandidates, `{"gateway_id":"g","candidates":[]}`, nil},
		{DecodeClientIngress, "invalidate_gateway_ice_candidates", EventInvalidateIceCandidates, `{"gateway_id":"g","candidates":[]}`, nil},
		{DecodeClientEgress, "create_flow", EventRequestAuthorization, `{"resource_id":"r"}`, nil},
		{DecodeClientIngress, "brand_new_event", "brand_new_event", `{"x":1}`, ErrUnknownEvent},
		{DecodeGatewayIngress, "brand_new_event", "brand_new_event", `[1,2]`, ErrUnknownEvent},
		{DecodeGatewayIngress, EventResourceUpdated, EventResourceUpdated, `{"id":"r","type":"quantum"}`, ErrUnknownResourceType},
		{DecodeGatewayIngress, EventCreateAuthorization, EventCreateAuthorization, `{"ref":"x","resource":{"id":"r","type":"quantum"}}`, ErrUnknownResourceType},
		{DecodeClientIngress, EventResourceCreatedOrUpdated, EventResourceCreatedOrUpdated, `{"id":"r","type":"quantum"}`, ErrUnknownResourceType},
		{DecodeGatewayIngress, EventAccessAuthorizationExpiryUpdated, EventAccessAuthorizationExpiryUpdated, `{}`, ErrObsolete},
	}
	for _, c := range cases {
		m, err := c.dec(c.in, []byte(c.payload))
		if c.wantError == nil && err != nil {
			t.Errorf("%s: %v", c.in, err)
		}
		if c.wantError != nil && (!errors.Is(err, c.wantError) || !Ignorable(err)) {
			t.Errorf("%s: err %v, want %v", c.in, err, c.wantError)
		}
		if m.Event != c.want {
			t.Errorf("%s: event %q, want %q", c.in, m.Event, c.want)
		}
	}
}

func TestMalformedIsNotIgnorable(t *testing.T) {
	for _, c := range []struct {
		dec     func(string, []byte) (Message, error)
		ev, pay string
	}{
		{DecodeGatewayIngress, EventInit, `[]`},
		{DecodeGatewayIngress, EventInit, `{"interface":{"ipv4":"not-an-ip"}}`},
		{DecodeClientIngress, EventResourceDeleted, `{"id":"x"}`},
		{DecodeClientIngress, EventAuthorizationCreated, `"str"`},
		{DecodeClientEgress, EventRequestAuthorization, `{"resource_id":5}`},
		{DecodeGatewayEgress, EventAuthorizationCreated, `{"ref":`},
	} {
		_, err := c.dec(c.ev, []byte(c.pay))
		if err == nil || Ignorable(err) {
			t.Errorf("%s %s: err %v, want a malformed-payload error", c.ev, c.pay, err)
		}
	}
}
