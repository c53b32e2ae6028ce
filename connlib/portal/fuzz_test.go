package portal

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fuzzDecode checks that a decoder never panics and that whatever it
// accepts re-encodes and decodes again to the same event.
func fuzzDecode(f *testing.F, dir string, dec func(string, []byte) (Message, error), tab *table) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", dir, "*.json"))
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(eventOf(file), b)
	}
	// Every known event with an empty object, so the fuzzer starts from each.
	for ev := range tab.decoders {
		f.Add(ev, []byte(`{}`))
	}
	f.Fuzz(func(t *testing.T, event string, payload []byte) {
		m, err := dec(event, payload)
		if err != nil {
			return
		}
		if legacyRaw[m.Event] {
			return
		}
		out, err := json.Marshal(m.Payload)
		if err != nil {
			// Only an accepted resource may not re-encode if its type is
			// unknown, and decoders reject those.
			t.Fatalf("accepted %s %q but cannot encode: %v", event, payload, err)
		}
		if _, err := dec(m.Event, out); err != nil && !Ignorable(err) {
			t.Fatalf("re-decode of %s %s: %v", m.Event, out, err)
		}
	})
}

func FuzzDecodeGatewayIngress(f *testing.F) {
	fuzzDecode(f, "gateway_ingress", DecodeGatewayIngress, gatewayIngress)
}
func FuzzDecodeGatewayEgress(f *testing.F) {
	fuzzDecode(f, "gateway_egress", DecodeGatewayEgress, gatewayEgress)
}
func FuzzDecodeClientIngress(f *testing.F) {
	fuzzDecode(f, "client_ingress", DecodeClientIngress, clientIngress)
}
func FuzzDecodeClientEgress(f *testing.F) {
	fuzzDecode(f, "client_egress", DecodeClientEgress, clientEgress)
}
