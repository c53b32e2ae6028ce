package phoenix

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Serializer versions, as given in the "vsn" query parameter of the
// WebSocket URL. Phoenix uses V1 when the parameter is absent; Firezone's
// connlib never sends it. The official JavaScript client sends vsn=2.0.0.
const (
	VsnV1 = "1.0.0"
	VsnV2 = "2.0.0"
)

// Reserved events of the Phoenix protocol.
const (
	EventJoin      = "phx_join"
	EventLeave     = "phx_leave"
	EventReply     = "phx_reply"
	EventClose     = "phx_close"
	EventError     = "phx_error"
	EventHeartbeat = "heartbeat"
	// TopicPhoenix is the topic of heartbeats; it is never joined.
	TopicPhoenix = "phoenix"
)

// Reply statuses and the reasons this package gives or interprets.
const (
	StatusOK    = "ok"
	StatusError = "error"

	ReasonUnmatchedTopic = "unmatched topic"
	ReasonUnknownMessage = "unknown_message"
	ReasonTokenExpired   = "token_expired"
	// EventDisconnect is the portal's event that ends a session; with
	// reason token_expired the client gives up (ErrInvalidToken).
	EventDisconnect = "disconnect"
)

// Errors returned by the frame decoder. All are wrapped in ErrBadFrame.
var (
	ErrBadFrame = errors.New("phoenix: malformed frame")
)

// rawFrame is one decoded Phoenix message. Every field aliases the buffer it
// was decoded from; nothing is copied. topic and event are the decoded
// string contents (they only allocate when the JSON string has escapes or
// non-ASCII bytes). joinRef, ref and payload are raw JSON values; a missing
// or null ref is nil (as is a missing join_ref).
type rawFrame struct {
	joinRef []byte
	ref     []byte
	topic   []byte
	event   []byte
	payload []byte
}

var (
	errNotObject     = wrapBad("V1 frame is not a JSON object")
	errNotArray      = wrapBad("V2 frame is not a 5-element JSON array")
	errTrailing      = wrapBad("trailing data after frame")
	errMissingKey    = wrapBad("missing topic, event, payload or ref")
	errTopicType     = wrapBad("topic is not a string")
	errEventType     = wrapBad("event is not a string")
	errRefType       = wrapBad("ref is not a string, integer or null")
	errInvalidJSON   = wrapBad("invalid JSON")
	errTooDeep       = wrapBad("JSON nested too deeply")
	errReplyNotObj   = wrapBad("reply payload is not an object")
	errReplyNoStatus = wrapBad("reply payload has no string status")
)

type frameError struct{ why string }

func (e *frameError) Error() string { return "phoenix: malformed frame: " + e.why }
func (e *frameError) Unwrap() error { return ErrBadFrame }

func wrapBad(why string) error { return &frameError{why} }

func jsonErr(err error) error {
	if err == errJSONDepth {
		return errTooDeep
	}
	return errInvalidJSON
}

// decodeFrame decodes one WebSocket text message in the given serializer.
func decodeFrame(b []byte, v2 bool) (rawFrame, error) {
	if v2 {
		return decodeV2(b)
	}
	return decodeV1(b)
}

// decodeV1 decodes {"topic":..,"event":..,"payload":..,"ref":..} with an
// optional "join_ref". Like Phoenix (Message.from_map!), all four of topic,
// event, payload and ref must be present; unknown keys are ignored and the
// last of duplicate keys wins, as in encoding/json.
func decodeV1(b []byte) (rawFrame, error) {
	var f rawFrame
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		if _, err := scanValue(b, 0); err != nil {
			return f, jsonErr(err)
		}
		return f, errNotObject
	}
	const (
		hasTopic = 1 << iota
		hasEvent
		hasPayload
		hasRef
	)
	seen := 0
	var topic, event []byte
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != '"' {
				return f, errInvalidJSON
			}
			ks := i
			var err error
			if i, err = scanString(b, i); err != nil {
				return f, errInvalidJSON
			}
			key := b[ks:i]
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return f, errInvalidJSON
			}
			vs := skipSpace(b, i+1)
			if i, err = scanValueDepth(b, vs, 1); err != nil {
				return f, jsonErr(err)
			}
			val := b[vs:i]
			switch string(stringContent(key)) {
			case "topic":
				seen |= hasTopic
				topic = val
			case "event":
				seen |= hasEvent
				event = val
			case "payload":
				seen |= hasPayload
				f.payload = val
			case "ref":
				seen |= hasRef
				f.ref = val
			case "join_ref":
				f.joinRef = val
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return f, errInvalidJSON
			}
			if b[i] == ',' {
				i++
				continue
			}
			if b[i] != '}' {
				return f, errInvalidJSON
			}
			i++
			break
		}
	}
	if skipSpace(b, i) != len(b) {
		return f, errTrailing
	}
	if seen != hasTopic|hasEvent|hasPayload|hasRef {
		return f, errMissingKey
	}
	return finishFrame(f, topic, event)
}

// decodeV2 decodes [join_ref, ref, topic, event, payload].
func decodeV2(b []byte) (rawFrame, error) {
	var f rawFrame
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		if _, err := scanValue(b, 0); err != nil {
			return f, jsonErr(err)
		}
		return f, errNotArray
	}
	i++
	var elems [5][]byte
	n := 0
	i = skipSpace(b, i)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			vs := skipSpace(b, i)
			var err error
			if i, err = scanValueDepth(b, vs, 1); err != nil {
				return f, jsonErr(err)
			}
			if n < len(elems) {
				elems[n] = b[vs:i]
			}
			n++
			i = skipSpace(b, i)
			if i >= len(b) {
				return f, errInvalidJSON
			}
			if b[i] == ',' {
				i++
				continue
			}
			if b[i] != ']' {
				return f, errInvalidJSON
			}
			i++
			break
		}
	}
	if skipSpace(b, i) != len(b) {
		return f, errTrailing
	}
	if n != 5 {
		return f, errNotArray
	}
	f.joinRef, f.ref, f.payload = elems[0], elems[1], elems[4]
	return finishFrame(f, elems[2], elems[3])
}

func finishFrame(f rawFrame, topic, event []byte) (rawFrame, error) {
	if len(topic) == 0 || topic[0] != '"' {
		return f, errTopicType
	}
	if len(event) == 0 || event[0] != '"' {
		return f, errEventType
	}
	f.topic = stringContent(topic)
	f.event = stringContent(event)
	if isNull(f.ref) {
		f.ref = nil
	} else if !validRef(f.ref) {
		return f, errRefType
	}
	if isNull(f.joinRef) {
		f.joinRef = nil
	} else if !validRef(f.joinRef) {
		return f, errRefType
	}
	return f, nil
}

func isNull(v []byte) bool { return string(v) == "null" }

func validRef(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if v[0] == '"' {
		return true
	}
	for j, c := range v {
		if c == '-' && j == 0 {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseRef returns the numeric value of a ref given as a JSON integer or as
// a string holding one (the JavaScript client sends "5"). ok is false for
// anything else.
func parseRef(v []byte) (uint64, bool) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if len(v) == 0 || len(v) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// replyPayload splits a phx_reply payload {"status":..,"response":..}.
// response is nil when absent.
func replyPayload(p []byte) (status, response []byte, err error) {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return nil, nil, errReplyNotObj
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return nil, nil, errReplyNoStatus
	}
	for {
		i = skipSpace(p, i)
		if i >= len(p) || p[i] != '"' {
			return nil, nil, errInvalidJSON
		}
		ks := i
		if i, err = scanString(p, i); err != nil {
			return nil, nil, errInvalidJSON
		}
		key := p[ks:i]
		i = skipSpace(p, i)
		if i >= len(p) || p[i] != ':' {
			return nil, nil, errInvalidJSON
		}
		vs := skipSpace(p, i+1)
		if i, err = scanValue(p, vs); err != nil {
			return nil, nil, jsonErr(err)
		}
		switch string(stringContent(key)) {
		case "status":
			if p[vs] != '"' {
				return nil, nil, errReplyNoStatus
			}
			status = stringContent(p[vs:i])
		case "response":
			response = p[vs:i]
		}
		i = skipSpace(p, i)
		if i >= len(p) {
			return nil, nil, errInvalidJSON
		}
		if p[i] == ',' {
			i++
			continue
		}
		if p[i] != '}' {
			return nil, nil, errInvalidJSON
		}
		break
	}
	if status == nil {
		return nil, nil, errReplyNoStatus
	}
	return status, response, nil
}

// reasonOf extracts "reason" from an error response {"reason":"..."}; it
// returns "" when there is none.
func reasonOf(response []byte) string {
	i := skipSpace(response, 0)
	if i >= len(response) || response[i] != '{' {
		return ""
	}
	i = skipSpace(response, i+1)
	reason := ""
	for i < len(response) && response[i] == '"' {
		ks := i
		var err error
		if i, err = scanString(response, i); err != nil {
			return ""
		}
		key := response[ks:i]
		i = skipSpace(response, i)
		if i >= len(response) || response[i] != ':' {
			return ""
		}
		vs := skipSpace(response, i+1)
		if i, err = scanValue(response, vs); err != nil {
			return ""
		}
		if string(stringContent(key)) == "reason" && response[vs] == '"' {
			reason = string(stringContent(response[vs:i]))
		}
		i = skipSpace(response, i)
		if i < len(response) && response[i] == ',' {
			i = skipSpace(response, i+1)
		}
	}
	return reason
}

// appendString appends s as a JSON string literal. It escapes like
// encoding/json without HTML escaping; invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendPayload appends a raw JSON payload, or null when it is empty.
func appendPayload(dst, payload []byte) []byte {
	if len(payload) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, payload...)
}

// appendRaw appends a raw JSON ref, or null when it is nil.
func appendRaw(dst, raw []byte) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, raw...)
}

// appendClientFrame encodes a client→server frame with an integer ref:
// V1 {"topic":T,"event":E,"payload":P,"ref":R} (the key order connlib
// uses, see reference §4.2) or V2 [JR,R,T,E,P]. topicLit is the topic
// already encoded as a JSON string literal; joinRef is used by V2 only.
func appendClientFrame(dst []byte, v2 bool, topicLit []byte, event string, payload []byte, ref uint64, joinRef uint64, hasJoinRef bool) []byte {
	if v2 {
		dst = append(dst, '[')
		if hasJoinRef {
			dst = append(dst, '"')
			dst = strconv.AppendUint(dst, joinRef, 10)
			dst = append(dst, '"')
		} else {
			dst = append(dst, "null"...)
		}
		dst = append(dst, ',', '"')
		dst = strconv.AppendUint(dst, ref, 10)
		dst = append(dst, '"', ',')
		dst = append(dst, topicLit...)
		dst = append(dst, ',')
		dst = appendString(dst, event)
		dst = append(dst, ',')
		dst = appendPayload(dst, payload)
		return append(dst, ']')
	}
	dst = append(dst, `{"topic":`...)
	dst = append(dst, topicLit...)
	dst = append(dst, `,"event":`...)
	dst = appendString(dst, event)
	dst = append(dst, `,"payload":`...)
	dst = appendPayload(dst, payload)
	dst = append(dst, `,"ref":`...)
	dst = strconv.AppendUint(dst, ref, 10)
	return append(dst, '}')
}

// appendServerFrame encodes a server→client frame: V1
// {"topic":T,"event":E,"ref":R,"payload":P} (Phoenix's V1 serializer has no
// join_ref) or V2 [JR,R,T,E,P]. ref and joinRef are raw JSON (nil = null).
func appendServerFrame(dst []byte, v2 bool, topic, event string, joinRef, ref, payload []byte) []byte {
	if v2 {
		dst = append(dst, '[')
		dst = appendRaw(dst, joinRef)
		dst = append(dst, ',')
		dst = appendRaw(dst, ref)
		dst = append(dst, ',')
		dst = appendString(dst, topic)
		dst = append(dst, ',')
		dst = appendString(dst, event)
		dst = append(dst, ',')
		dst = appendPayload(dst, payload)
		return append(dst, ']')
	}
	dst = append(dst, `{"topic":`...)
	dst = appendString(dst, topic)
	dst = append(dst, `,"event":`...)
	dst = appendString(dst, event)
	dst = append(dst, `,"ref":`...)
	dst = appendRaw(dst, ref)
	dst = append(dst, `,"payload":`...)
	dst = appendPayload(dst, payload)
	return append(dst, '}')
}

// appendReplyPayload encodes {"status":S,"response":R}; an empty response
// becomes {} as in Phoenix.
func appendReplyPayload(dst []byte, status string, response []byte) []byte {
	dst = append(dst, `{"status":`...)
	dst = appendString(dst, status)
	dst = append(dst, `,"response":`...)
	if len(response) == 0 {
		dst = append(dst, '{', '}')
	} else {
		dst = append(dst, response...)
	}
	return append(dst, '}')
}
