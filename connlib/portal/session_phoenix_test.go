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

// TestSessionOverPhoenix drives Session with a real phoenix client and
// server on loopback: capabilities right after each join, candidates held
// across a server-side close and flushed on the rejoin.
func TestSessionOverPhoenix(t *testing.T) {
	type got struct{ event, payload string }
	var mu sync.Mutex
	var seen []got
	var chans []*phoenix.Channel
	srv := phoenix.NewServer(phoenix.ServerConfig{Logger: zaptest.NewLogger(t)})
	srv.HandleTopic(TopicClient, phoenix.HandlerFuncs{
		OnJoin: func(ch *phoenix.Channel, _ json.RawMessage) (any, error) {
			mu.Lock()
			chans = append(chans, ch)
			mu.Unlock()
			return nil, nil
		},
		OnEvent: func(ch *phoenix.Channel, event string, p json.RawMessage, r *phoenix.Replier) error {
			mu.Lock()
			seen = append(seen, got{event, string(p)})
			mu.Unlock()
			return nil
		},
	})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { srv.Close() })

	params := LoginParams{ExternalID: ExternalID("6c7e3d4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"), Name: "t", PublicKey: testPub}
	c, err := phoenix.NewClient(phoenix.ClientConfig{
		URL: ClientChannelURL(hs.URL), Token: "t", Topic: TopicClient, Params: params.Params,
		UserAgent: UserAgent(OSInfo{Type: "Ubuntu", Version: "24.04"}, ComponentHeadlessClient, "1.5.12"),
		Logger:    zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	s := NewSession(zaptest.NewLogger(t))
	cand := GatewayCandidates{GatewayID: "g", Candidates: []string{"candidate:1 1 udp 1 127.0.0.1 1 typ host"}}
	s.SendCandidates(EventNewGatewayIceCandidates, cand) // before any join: held
	joins := 0
	waitSeen := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			l := len(seen)
			mu.Unlock()
			if l >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server saw %d messages, want %d", l, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for ev := range c.Events() {
		switch ev.(type) {
		case *phoenix.Joined:
			joins++
			if err := s.OnJoin(SendVia(c)); err != nil {
				t.Fatal(err)
			}
			if joins == 1 {
				waitSeen(2)
				// Portal closes the channel; the candidate sent meanwhile is held.
				s.OnDisconnect()
				s.SendCandidates(EventInvalidateGatewayIceCandidates, cand)
				mu.Lock()
				ch := chans[0]
				mu.Unlock()
				_ = ch.Close()
				continue
			}
			waitSeen(4)
			mu.Lock()
			defer mu.Unlock()
			want := []got{
				{EventSetSnownetCapabilities, `{"iceless":false}`},
				{EventNewGatewayIceCandidates, `{"gateway_id":"g","candidates":["candidate:1 1 udp 1 127.0.0.1 1 typ host"]}`},
				{EventSetSnownetCapabilities, `{"iceless":false}`},
				{EventInvalidateGatewayIceCandidates, `{"gateway_id":"g","candidates":["candidate:1 1 udp 1 127.0.0.1 1 typ host"]}`},
			}
			for i := range want {
				if seen[i] != want[i] {
					t.Fatalf("message %d: %+v, want %+v", i, seen[i], want[i])
				}
			}
			return
		}
	}
	t.Fatalf("client ended: %v", <-done)
}
