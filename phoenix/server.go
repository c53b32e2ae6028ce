package phoenix

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// Defaults of ServerConfig.
const (
	// DefaultServerJoinTimeout: a socket with no joined channel after this
	// long is closed.
	DefaultServerJoinTimeout = 15 * time.Second
	// DefaultIdleTimeout is the portal endpoint's WebSocket idle timeout
	// (reference §4.1): a socket that sends nothing (not even a
	// heartbeat) for this long is closed.
	DefaultIdleTimeout = 37 * time.Second
	// DefaultServerMaxFrameSize bounds one message from a client.
	DefaultServerMaxFrameSize = 1 << 20
)

// ServerConfig configures a Server. Zero values mean the defaults.
type ServerConfig struct {
	// Authenticate decides whether a WebSocket upgrade is accepted. token
	// is taken from "X-Authorization: Bearer <token>" or else the "token"
	// query parameter; it is "" when neither is present. Return the
	// identity (available as Channel.Identity) or an error: an *HTTPError
	// chooses the status, problem+json code and Retry-After (e.g.
	// Unauthorized("missing_token", …), RateLimited(time.Second)); any other
	// error becomes 500 unhandled_connect_error. Nil accepts everyone with
	// a nil identity. It may be called concurrently.
	Authenticate func(r *http.Request, token string) (identity any, err error)
	// Logger; nil means zap.NewNop(). Tokens are never logged.
	Logger *zap.Logger
	// JoinTimeout: sockets that have not joined a channel by then are
	// dropped. Default 15 s.
	JoinTimeout time.Duration
	// IdleTimeout: sockets silent this long are dropped. Default 37 s.
	IdleTimeout time.Duration
	// MaxFrameSize bounds one incoming message; a bigger one closes the
	// socket with status 1009. Default 1 MiB.
	MaxFrameSize int64
	// OriginPatterns are allowed cross-origin hosts for browser clients
	// (see websocket.AcceptOptions). Requests without Origin (all
	// non-browser clients) are always accepted.
	OriginPatterns []string
}

// Server is the server side of Phoenix Channels over WebSocket, serving
// the V1 (default) and V2 (vsn=2.0.0) serializers. It implements
// http.Handler: mount it at the socket path, e.g.
// mux.Handle("/gateway/v2/websocket", srv).
//
// Concurrency: all methods may be called concurrently. Handlers registered
// with HandleTopic are called on the socket's reader goroutine, one message
// at a time per socket, so they see a client's messages in order; they
// must not block for long (spawn goroutines for slow work).
type Server struct {
	cfg ServerConfig
	log *zap.Logger

	badFrames atomic.Uint64
	closed    atomic.Bool

	mu       sync.RWMutex
	exact    map[string]ChannelHandler
	prefixes []prefixRoute
	sockets  map[*socket]struct{}
	nextID   uint64
}

type prefixRoute struct {
	prefix string
	h      ChannelHandler
}

// NewServer returns a server with no topics.
func NewServer(cfg ServerConfig) *Server {
	setDefault(&cfg.JoinTimeout, DefaultServerJoinTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.MaxFrameSize, DefaultServerMaxFrameSize)
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		exact:   make(map[string]ChannelHandler),
		sockets: make(map[*socket]struct{}),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	return s
}

// HandleTopic routes joins of topic to h. A topic ending in "*" matches
// every topic with that prefix (as Phoenix's `channel "room:*"`); exact
// topics win over prefixes, longer prefixes over shorter. Joins of
// unrouted topics get the error reply "unmatched topic".
func (s *Server) HandleTopic(topic string, h ChannelHandler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := strings.CutSuffix(topic, "*"); ok {
		s.prefixes = append(s.prefixes, prefixRoute{p, h})
		return
	}
	s.exact[topic] = h
}

func (s *Server) route(topic string) ChannelHandler {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if h, ok := s.exact[topic]; ok {
		return h
	}
	var best *prefixRoute
	for i := range s.prefixes {
		p := &s.prefixes[i]
		if strings.HasPrefix(topic, p.prefix) && (best == nil || len(p.prefix) > len(best.prefix)) {
			best = p
		}
	}
	if best == nil {
		return nil
	}
	return best.h
}

// BadFrames returns how many undecodable frames were dropped.
func (s *Server) BadFrames() uint64 { return s.badFrames.Load() }

// NumSockets returns the number of open sockets.
func (s *Server) NumSockets() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sockets)
}

// Close drops every socket at once (without phx_close, as a crashed or
// restarted portal would) and refuses new ones with 503. Leave is called
// for every joined channel. It does not wait for the handlers to finish.
func (s *Server) Close() error {
	s.closed.Store(true)
	s.mu.RLock()
	socks := make([]*socket, 0, len(s.sockets))
	for so := range s.sockets {
		socks = append(socks, so)
	}
	s.mu.RUnlock()
	for _, so := range socks {
		so.abort(errors.New("server closed"))
	}
	return nil
}

// tokenFrom implements the portal's token lookup: the X-Authorization
// header (whitespace stripped, "Bearer " removed), else the legacy "token"
// query parameter.
func tokenFrom(r *http.Request) string {
	if v := strings.TrimSpace(r.Header.Get("X-Authorization")); v != "" {
		if t, ok := cutPrefixFold(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return v
	}
	return r.URL.Query().Get("token")
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// ServeHTTP authenticates and upgrades the request, then serves the
// socket until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := s.log.With(zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path))
	if s.closed.Load() {
		(&HTTPError{Status: http.StatusServiceUnavailable, Code: "shutting_down", RetryAfter: time.Second}).write(w)
		return
	}
	q := r.URL.Query()
	v2 := false
	switch q.Get("vsn") {
	case "", VsnV1:
	case VsnV2:
		v2 = true
	default:
		(&HTTPError{Status: http.StatusBadRequest, Code: "unsupported_vsn", Detail: "unsupported serializer version"}).write(w)
		return
	}
	var identity any
	if s.cfg.Authenticate != nil {
		id, err := s.cfg.Authenticate(r, tokenFrom(r))
		if err != nil {
			var he *HTTPError
			if !errors.As(err, &he) {
				log.Error("authenticate failed", zap.Error(err))
				he = &HTTPError{Status: http.StatusInternalServerError, Code: "unhandled_connect_error"}
			}
			log.Info("socket refused", zap.Int("status", he.Status), zap.String("code", he.Code))
			he.write(w)
			return
		}
		identity = id
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		log.Debug("websocket accept failed", zap.Error(err))
		return
	}
	conn.SetReadLimit(s.cfg.MaxFrameSize)
	q.Del("token")
	ctx, cancel := context.WithCancelCause(context.Background())
	so := &socket{
		srv:      s,
		conn:     conn,
		v2:       v2,
		identity: identity,
		params:   q,
		header:   redactHeader(r.Header),
		remote:   r.RemoteAddr,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		channels: make(map[string]*Channel),
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		_ = conn.CloseNow()
		cancel(nil)
		return
	}
	s.sockets[so] = struct{}{}
	s.mu.Unlock()
	log.Debug("socket connected", zap.Bool("v2", v2))
	so.serve()
	s.mu.Lock()
	delete(s.sockets, so)
	s.mu.Unlock()
}

// redactHeader copies h without the credentials a handler never needs.
func redactHeader(h http.Header) http.Header {
	c := h.Clone()
	c.Del("X-Authorization")
	c.Del("Authorization")
	c.Del("Cookie")
	return c
}

// params copy for handlers.
func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}
