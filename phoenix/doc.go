// Package phoenix speaks Phoenix Channels over WebSocket
// (github.com/coder/websocket), the protocol of Firezone's portal
// (reference §4.1–4.2): a Client that joins one topic and keeps it joined,
// and a Server for the development portal and tests.
//
// # Wire format
//
// Without a "vsn" query parameter Phoenix uses its V1 JSON serializer, and
// so does this package: every frame is a JSON object. The client writes
//
//	{"topic":"gateway","event":"phx_join","payload":null,"ref":0}
//	{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}
//	{"topic":"gateway","event":"authorization_created","payload":{…},"ref":5}
//
// with integer refs counting from 0 per connection, and the server writes
//
//	{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}
//	{"topic":"gateway","event":"init","ref":null,"payload":{…}}
//
// With vsn=2.0.0 (the official JavaScript client's default) frames are
// arrays [join_ref, ref, topic, event, payload]; the server serves both,
// the client speaks V2 when ClientConfig.Vsn is VsnV2.
//
// # Client
//
// Client.Run dials ClientConfig.URL + "/websocket" (http→ws, https→wss)
// with the query parameters from ClientConfig.Params (called again before
// every attempt, so a public key can change), "X-Authorization: Bearer
// <token>" and the User-Agent; joins the topic; and then heartbeats every
// 10 s. Nothing but the join is sent before the join reply. An error
// reply to the join, an HTTP 401 or a disconnect with reason token_expired
// are fatal and returned by Run; everything else (503 with Retry-After,
// phx_close, lost heartbeats, network errors) is retried with the backoff
// of reference §4.1. An "unmatched topic" reply makes the client rejoin on
// the same socket; phx_error is only logged.
//
// Events (Client.Events, a channel closed when Run returns) are
// *StateChange, *Joined, *Message and *PushFailed values. Client.Push
// queues a message while joined (else ErrNotConnected) with an optional
// ReplyFunc; Client.Request waits for the reply.
//
//	c, err := phoenix.NewClient(phoenix.ClientConfig{
//		URL:       "wss://portal.example.com/gateway/v2",
//		Token:     token,
//		UserAgent: phoenix.UserAgent("Ubuntu", "24.04", "gateway", "1.6.1", "x86_64", "6.8.0"),
//		Params: func() []phoenix.Param {
//			return []phoenix.Param{{"external_id", id}, {"name", name}, {"public_key", currentKey()}}
//		},
//		Topic:  "gateway",
//		Logger: log,
//	})
//	if err != nil { … }
//	go func() {
//		for ev := range c.Events() {
//			switch ev := ev.(type) {
//			case *phoenix.Joined:
//				_ = c.Push("set_snownet_capabilities", caps, nil)
//			case *phoenix.Message:
//				handle(ev.Event, ev.Payload)
//			case *phoenix.StateChange:
//				log.Info("portal", zap.Stringer("state", ev.State), zap.Error(ev.Err))
//			}
//		}
//	}()
//	err = c.Run(ctx) // nil after ctx is cancelled; else fatal (errors.Is ErrInvalidToken, ErrLoginFailed, ErrMaxRetriesReached)
//
// # Server
//
// Server is an http.Handler. It authenticates the upgrade with
// ServerConfig.Authenticate (token from X-Authorization or the legacy
// "token" query parameter; refuse with an *HTTPError, sent as
// application/problem+json), answers heartbeats, routes phx_join per topic
// to a ChannelHandler, replies "unmatched topic" to messages for topics
// not joined and "unknown_message" to events a handler does not know, and
// drops sockets that never join (JoinTimeout) or go silent (IdleTimeout).
//
//	srv := phoenix.NewServer(phoenix.ServerConfig{
//		Logger: log,
//		Authenticate: func(r *http.Request, token string) (any, error) {
//			if token == "" {
//				return nil, phoenix.Unauthorized("missing_token", "no token")
//			}
//			gw, ok := lookup(token)
//			if !ok {
//				return nil, phoenix.Unauthorized("invalid_token", "unknown token")
//			}
//			return gw, nil
//		},
//	})
//	srv.HandleTopic("gateway", phoenix.HandlerFuncs{
//		OnJoin: func(ch *phoenix.Channel, _ json.RawMessage) (any, error) {
//			key := ch.Params().Get("public_key")
//			_ = ch.Push("init", initPayload(ch.Identity(), key)) // sent after the join reply
//			return nil, nil
//		},
//		OnEvent: func(ch *phoenix.Channel, event string, p json.RawMessage, r *phoenix.Replier) error {
//			switch event {
//			case "set_snownet_capabilities":
//				return nil // no reply, as the portal
//			}
//			return phoenix.ErrUnknownEvent
//		},
//		OnLeave: func(ch *phoenix.Channel, reason error) { forget(ch) },
//	})
//	mux.Handle("/gateway/v2/websocket", srv)
//
// # Logging
//
// Both sides log through the injected *zap.Logger. Tokens are never
// logged: not the X-Authorization header, and URLs are logged through
// RedactURL, which hides a "token" query parameter.
package phoenix
