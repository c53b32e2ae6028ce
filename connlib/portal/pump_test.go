package portal

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gozone/gozone/phoenix"
)

func TestPumpDecodesAndSendsCapabilities(t *testing.T) {
	var mu sync.Mutex
	var caps []string
	var params []string
	srv := phoenix.NewServer(phoenix.ServerConfig{Logger: zaptest.NewLogger(t)})
	srv.HandleTopic(TopicGateway, phoenix.HandlerFuncs{
		OnJoin: func(ch *phoenix.Channel, _ json.RawMessage) (any, error) {
			mu.Lock()
			params = append(params, ch.Params().Encode(), ch.Header().Get("User-Agent"))
			mu.Unlock()
			_ = ch.Push("some_future_event", map[string]int{"x": 1})
			_ = ch.Push(EventInit, json.RawMessage(`{"interface":"not an object"}`)) // malformed: dropped
			_ = ch.Push(EventResourceUpdated, json.RawMessage(`{"id":"r","type":"quantum"}`))
			_ = ch.Push(EventInit, json.RawMessage(`{"interface":{"ipv4":"100.64.0.9","ipv6":"fd00:2021:1111::9"},"account_slug":"acme"}`))
			return nil, nil
		},
		OnEvent: func(ch *phoenix.Channel, event string, p json.RawMessage, r *phoenix.Replier) error {
			mu.Lock()
			caps = append(caps, event+" "+string(p))
			mu.Unlock()
			return nil
		},
	})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { srv.Close() })

	ua := UserAgent(OSInfo{Type: "Ubuntu", Version: "24.04", Arch: "x86_64", Kernel: "6.8.0"}, ComponentGateway, "1.6.1")
	cfg := ChannelConfig(TopicGateway, hs.URL, "tok", ua, func() LoginParams {
		return LoginParams{ExternalID: "gw", Name: "n", PublicKey: testPub, DeviceSerial: "never-for-gateways"}
	}, zaptest.NewLogger(t))
	c, err := phoenix.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	s := NewSession(zaptest.NewLogger(t))
	got := make(chan Message, 8)
	pumped := make(chan struct{})
	go func() { s.Pump(c, DecodeGatewayIngress, func(m Message) { got <- m }); close(pumped) }()
	t.Cleanup(func() { cancel(); <-done; <-pumped })

	select {
	case m := <-got:
		gi, ok := m.Payload.(*GatewayInit)
		if m.Event != EventInit || !ok || gi.Interface.IPv4 != MustIP("100.64.0.9") {
			t.Fatalf("first handled message %+v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no init handled")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(caps)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no set_snownet_capabilities")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if caps[0] != `set_snownet_capabilities {"iceless":false}` {
		t.Fatalf("first message %q", caps[0])
	}
	if params[0] != "external_id=gw&name=n&public_key="+"fiAjBY%2BLr0Ih1oxGjUzMSs5UUkLOl8spg5oZtmmsLWY%3D" || params[1] != ua {
		t.Fatalf("connect params %q", params)
	}
	if len(got) != 0 {
		t.Fatalf("ignorable or malformed messages were handled: %d", len(got))
	}
	if !s.Connected() {
		t.Fatal("session not connected")
	}
}
