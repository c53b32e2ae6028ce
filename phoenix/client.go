package phoenix

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// Defaults of ClientConfig (reference §4.1).
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultJoinTimeout       = 5 * time.Second
	DefaultHandshakeTimeout  = 15 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	// DefaultMaxFrameSize bounds one incoming message. The portal's init
	// carries every resource, so it is generous.
	DefaultMaxFrameSize = 8 << 20
	DefaultMaxQueue     = 1024
	DefaultEventBuffer  = 64
	// maxMissedHeartbeats: more than this many unanswered heartbeats
	// means the connection is dead.
	maxMissedHeartbeats = 3
)

// ClientConfig configures a Client. Zero values mean the defaults.
type ClientConfig struct {
	// URL is the portal endpoint without "/websocket", e.g.
	// "wss://api.firezone.dev/gateway/v2" (http/https are mapped to ws/wss).
	URL string
	// Token is sent as "X-Authorization: Bearer <token>". It is never
	// logged.
	Token string
	// UserAgent is sent as User-Agent; see the UserAgent helper for the
	// format the portal requires.
	UserAgent string
	// Params returns the query parameters in order. It is called before
	// every connection attempt, so values such as public_key are
	// recomputed at each (re)connect. Nil means none.
	Params func() []Param
	// Topic is the one channel this client joins, e.g. "gateway".
	Topic string
	// JoinPayload is the join's payload; nil sends null.
	JoinPayload json.RawMessage
	// Logger; nil means zap.NewNop().
	Logger *zap.Logger
	// MaxPartitionTime bounds how long the client keeps reconnecting
	// after it had joined once; 0 means forever.
	MaxPartitionTime time.Duration
	// Vsn selects the serializer: "" or VsnV1 (no vsn parameter, JSON
	// objects, as connlib) or VsnV2 (vsn=2.0.0 appended, arrays).
	Vsn string
	// Header holds extra handshake headers.
	Header http.Header
	// TLSConfig for wss; nil means the system defaults.
	TLSConfig *tls.Config

	// Clock drives backoff, heartbeats and the join timeout; nil means
	// the system clock. Jitter returns values in [0,1) for the backoff;
	// nil means random.
	Clock  Clock
	Jitter func() float64

	HeartbeatInterval time.Duration // default 10 s
	JoinTimeout       time.Duration // default 5 s
	HandshakeTimeout  time.Duration // TCP+TLS+WebSocket, default 15 s
	DialTimeout       time.Duration // TCP connect per address, default 5 s
	MaxFrameSize      int64         // default 8 MiB
	MaxQueue          int           // queued pushes, default 1024
	EventBuffer       int           // Events() capacity, default 64
}

// Client is a Phoenix Channels client that joins one topic and keeps it
// joined, reconnecting by the policy in backoff.go until Run's context is
// cancelled or a fatal error occurs.
//
// Concurrency: Run must be called once. Push, Request, State and Events
// may be called from any goroutine at any time, also before Run and after
// it returned (Push then fails with ErrNotConnected).
type Client struct {
	cfg      ClientConfig
	log      *zap.Logger
	clock    Clock
	v2       bool
	topicLit []byte
	http     *http.Client
	events   chan Event

	running atomic.Bool
	// badFrames counts undecodable frames (dropped, connection kept).
	badFrames atomic.Uint64

	mu    sync.Mutex
	state State
	sess  *session // the joined session, nil while not joined
}

// NewClient validates cfg and returns a client; it does not connect.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Topic == "" {
		return nil, errors.New("phoenix: ClientConfig.Topic is empty")
	}
	if _, err := BuildURL(cfg.URL, nil); err != nil {
		return nil, err
	}
	switch cfg.Vsn {
	case "", VsnV1, VsnV2:
	default:
		return nil, fmt.Errorf("phoenix: unsupported serializer version %q", cfg.Vsn)
	}
	if len(cfg.JoinPayload) > 0 {
		if end, err := scanValue(cfg.JoinPayload, 0); err != nil || skipSpace(cfg.JoinPayload, end) != len(cfg.JoinPayload) {
			return nil, errors.New("phoenix: JoinPayload is not valid JSON")
		}
	}
	setDefault(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&cfg.JoinTimeout, DefaultJoinTimeout)
	setDefault(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	setDefault(&cfg.MaxFrameSize, DefaultMaxFrameSize)
	setDefault(&cfg.MaxQueue, DefaultMaxQueue)
	setDefault(&cfg.EventBuffer, DefaultEventBuffer)
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		v2:       cfg.Vsn == VsnV2,
		topicLit: appendString(nil, cfg.Topic),
		events:   make(chan Event, cfg.EventBuffer),
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.With(zap.String("topic", cfg.Topic))
	if c.clock == nil {
		c.clock = SystemClock{}
	}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext:         (&raceDialer{timeout: cfg.DialTimeout}).DialContext,
		TLSClientConfig:     cfg.TLSConfig,
		TLSHandshakeTimeout: cfg.HandshakeTimeout,
		DisableKeepAlives:   true,
		// A WebSocket upgrade is HTTP/1.1 only.
		ForceAttemptHTTP2: false,
	}}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Events returns the channel of events (*StateChange, *Joined, *Message,
// *PushFailed) in the order they happened. It is closed when Run returns.
// The consumer must keep reading: the client blocks (and so stops reading
// the socket) while the channel is full, so a consumer stalled for tens
// of seconds makes heartbeats fail and the client reconnect.
func (c *Client) Events() <-chan Event { return c.events }

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// BadFrames returns how many undecodable frames were dropped.
func (c *Client) BadFrames() uint64 { return c.badFrames.Load() }

func (c *Client) setState(ctx context.Context, ev *StateChange) {
	c.mu.Lock()
	c.state = ev.State
	c.mu.Unlock()
	c.emit(ctx, ev)
}

// emit delivers ev unless ctx ends first.
func (c *Client) emit(ctx context.Context, ev Event) bool {
	select {
	case c.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run connects, joins and keeps the channel joined until ctx is cancelled
// (it then leaves the channel, closes the socket and returns nil) or a
// fatal error happens, which it returns: errors.Is(err, ErrInvalidToken),
// ErrLoginFailed or ErrMaxRetriesReached. Every other failure is retried.
// Run closes Events before it returns.
func (c *Client) Run(ctx context.Context) (err error) {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("phoenix: Client.Run called twice")
	}
	defer func() {
		c.mu.Lock()
		c.state = StateClosed
		c.mu.Unlock()
		// Best effort: the consumer may have stopped reading.
		select {
		case c.events <- &StateChange{State: StateClosed, Err: err}:
		default:
		}
		close(c.events)
	}()
	bo := backoff{maxElapsed: c.cfg.MaxPartitionTime, jitter: c.cfg.Jitter, start: c.clock.Now()}
	for {
		c.setState(ctx, &StateChange{State: StateConnecting})
		joined, err := c.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if isFatal(err) {
			c.log.Error("portal connection failed permanently", zap.Error(err))
			return err
		}
		if joined {
			bo.reset()
		}
		delay, ok := bo.next(c.clock.Now())
		if !ok {
			return fmt.Errorf("%w: last error: %w", ErrMaxRetriesReached, err)
		}
		var he *HTTPError
		if errors.As(err, &he) && he.RetryAfter > 0 {
			delay = he.RetryAfter
		}
		next := c.clock.Now().Add(delay)
		c.log.Info("portal connection lost, reconnecting", zap.Error(err), zap.Duration("delay", delay))
		// The timer exists before the event goes out, so a test driving a
		// fake clock from the event cannot advance past it.
		t := c.clock.NewTimer(delay)
		c.setState(ctx, &StateChange{State: StateReconnecting, NextAttempt: next, Err: err})
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

func isFatal(err error) bool {
	return errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrLoginFailed) || errors.Is(err, ErrMaxRetriesReached)
}

// dial performs the WebSocket handshake. A refused upgrade becomes an
// *HTTPError.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	var params []Param
	if c.cfg.Params != nil {
		params = c.cfg.Params()
	}
	if c.v2 {
		params = append(params[:len(params):len(params)], Param{"vsn", VsnV2})
	}
	u, err := BuildURL(c.cfg.URL, params)
	if err != nil {
		return nil, err
	}
	h := c.cfg.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.cfg.Token != "" {
		h.Set("X-Authorization", "Bearer "+strings.TrimSpace(c.cfg.Token))
	}
	if c.cfg.UserAgent != "" {
		h.Set("User-Agent", c.cfg.UserAgent)
	}
	c.log.Debug("connecting to portal", zap.String("url", RedactURL(u)))
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(hctx, u.String(), &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
			}
			return nil, httpErrorFrom(resp, body, c.clock.Now())
		}
		return nil, fmt.Errorf("phoenix: connecting to %s: %w", RedactURL(u), redactErr(err))
	}
	conn.SetReadLimit(c.cfg.MaxFrameSize)
	return conn, nil
}

// redactErr hides a token given as a query parameter (legacy) from error
// messages, which net/http fills with the full URL.
func redactErr(err error) error {
	msg := err.Error()
	red := tokenParamRE.ReplaceAllString(msg, "${1}REDACTED")
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

var tokenParamRE = regexp.MustCompile(`(?i)([?&]token=)[^&\s"]*`)

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
