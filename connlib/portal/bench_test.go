package portal

import (
	"os"
	"testing"
)

func benchDecode(b *testing.B, dec Decoder, file, event string) {
	payload, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := dec(event, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCreateAuthorization(b *testing.B) {
	benchDecode(b, DecodeGatewayIngress, "testdata/golden/gateway_ingress/create_authorization.json", EventCreateAuthorization)
}

func BenchmarkDecodeClientInit(b *testing.B) {
	benchDecode(b, DecodeClientIngress, "testdata/golden/client_ingress/init.json", EventInit)
}
