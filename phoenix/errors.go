package phoenix

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors of the client. Fatal errors returned by Client.Run wrap
// one of ErrInvalidToken, ErrLoginFailed or ErrMaxRetriesReached; test them
// with errors.Is.
var (
	// ErrNotConnected is returned by Client.Push while the channel is not
	// joined: messages are never queued across reconnects nor sent before
	// the join reply. The caller drops the message (connlib logs it).
	ErrNotConnected = errors.New("phoenix: not connected to the portal")
	// ErrDisconnected is given to reply callbacks whose push was queued or
	// sent but whose connection went away before a reply came.
	ErrDisconnected = errors.New("phoenix: connection lost before the reply")
	// ErrQueueFull is returned by Client.Push when MaxQueue messages are
	// already waiting to be written.
	ErrQueueFull = errors.New("phoenix: outbound queue full")
	// ErrInvalidToken is fatal: the portal refused the token (HTTP 401) or
	// ended the session with reason token_expired. The token must be
	// replaced; retrying cannot help.
	ErrInvalidToken = errors.New("phoenix: token rejected by the portal; a new token is needed")
	// ErrLoginFailed is fatal: the portal answered the join with an error.
	ErrLoginFailed = errors.New("phoenix: join refused by the portal")
	// ErrMaxRetriesReached is fatal: reconnecting took longer than allowed
	// (15 s before the first successful join, MaxPartitionTime after).
	ErrMaxRetriesReached = errors.New("phoenix: gave up reconnecting to the portal")
	// ErrHeartbeatTimeout ends a connection whose heartbeats went
	// unanswered; the client reconnects.
	ErrHeartbeatTimeout = errors.New("phoenix: heartbeats unanswered")
	// ErrJoinTimeout ends a connection whose join reply did not come in
	// time; the client reconnects.
	ErrJoinTimeout = errors.New("phoenix: no reply to the join in time")
	// ErrClosedByServer ends a connection on phx_close; the client
	// reconnects. On the server it is the reason given to Leave when the
	// server closed the channel.
	ErrClosedByServer = errors.New("phoenix: channel closed by the server (phx_close)")
	// ErrChannelClosed is returned by Channel methods after the channel
	// ended.
	ErrChannelClosed = errors.New("phoenix: channel closed")
	// ErrUnknownEvent may be returned by ChannelHandler.HandleIn; the
	// server then replies {"status":"error","response":{"reason":"unknown_message"}}.
	ErrUnknownEvent = errors.New("phoenix: unknown event")
	// ErrLeft is the reason given to ChannelHandler.Leave when the client
	// sent phx_leave.
	ErrLeft = errors.New("phoenix: client left the channel")
	// ErrSocketClosed is the reason given to Leave when the WebSocket ended.
	ErrSocketClosed = errors.New("phoenix: socket closed")
)

// ReplyError is a reply with status "error". On the client it is what
// Request returns and reply callbacks get; on the server a ChannelHandler
// returns it from Join or gives it to Replier.Error to choose the reply.
type ReplyError struct {
	// Reason is response.reason, "" if the response has none.
	Reason string
	// Response is the raw response; on the server nil means
	// {"reason":Reason}.
	Response json.RawMessage
}

func (e *ReplyError) Error() string {
	if e.Reason != "" {
		return "phoenix: error reply: " + e.Reason
	}
	return "phoenix: error reply: " + string(e.Response)
}

// JoinError is the fatal error when the join is refused; it wraps
// ErrLoginFailed.
type JoinError struct {
	Topic  string
	Reason string
	// Response is the raw error response.
	Response json.RawMessage
}

func (e *JoinError) Error() string {
	return fmt.Sprintf("phoenix: join of %q refused by the portal: %s", e.Topic, e.Reason)
}
func (e *JoinError) Unwrap() error { return ErrLoginFailed }

// HTTPError is a refused WebSocket upgrade. On the server,
// ServerConfig.Authenticate returns it to choose the HTTP status, the
// application/problem+json body {"title","status","detail","code"} and the
// Retry-After header. On the client it describes the portal's answer;
// with Status 401 it also wraps ErrInvalidToken.
type HTTPError struct {
	Status int
	// Code is the problem code, e.g. "invalid_token", "rate_limit".
	Code string
	// Title defaults to the HTTP status text.
	Title string
	// Detail is a human-readable explanation.
	Detail string
	// RetryAfter is sent/received as the Retry-After header (whole
	// seconds); 0 means none.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "phoenix: portal answered HTTP %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	if e.Status == http.StatusUnauthorized {
		b.WriteString("; the token is invalid and must be replaced")
	}
	return b.String()
}

// Unwrap makes a 401 match ErrInvalidToken.
func (e *HTTPError) Unwrap() error {
	if e.Status == http.StatusUnauthorized {
		return ErrInvalidToken
	}
	return nil
}

// Unauthorized is the portal's 401 refusal; code is "invalid_token" or
// "missing_token". Clients treat it as fatal.
func Unauthorized(code, detail string) *HTTPError {
	return &HTTPError{Status: http.StatusUnauthorized, Code: code, Detail: detail}
}

// RateLimited is the portal's 503 rate_limit with Retry-After.
func RateLimited(retryAfter time.Duration) *HTTPError {
	return &HTTPError{Status: http.StatusServiceUnavailable, Code: "rate_limit", Detail: "rate limit exceeded", RetryAfter: retryAfter}
}

type problemJSON struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code,omitempty"`
}

// write sends the refusal as application/problem+json.
func (e *HTTPError) write(w http.ResponseWriter) {
	title := e.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	body, _ := json.Marshal(problemJSON{Title: title, Status: e.Status, Detail: e.Detail, Code: e.Code})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// httpErrorFrom builds an HTTPError from a refused handshake response whose
// body (at most the first KiB) has been read into body.
func httpErrorFrom(resp *http.Response, body []byte, now time.Time) *HTTPError {
	e := &HTTPError{Status: resp.StatusCode}
	var p problemJSON
	if json.Unmarshal(body, &p) == nil {
		e.Code, e.Title, e.Detail = p.Code, p.Title, p.Detail
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or
// unusable. It is capped at one hour so a hostile header cannot park the
// client forever.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > 3600 {
			secs = 3600
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, time.Hour)
}
