package phoenix

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
)

var integerRE = regexp.MustCompile(`^-?[0-9]+$`)

// refShapeOK mirrors validRef with encoding/json's view of the value.
func refShapeOK(raw json.RawMessage) bool {
	if raw == nil || string(raw) == "null" {
		return true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return true
	}
	return integerRE.Match(raw)
}

// FuzzDecodeFrame checks the hand-written frame decoder against
// encoding/json: it never panics, accepts only valid JSON, extracts the
// same topic, event, ref and payload, and rejects only frames that
// encoding/json also shows to be malformed or mis-shaped.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`), false)
	f.Add([]byte(`{"topic":"gateway","event":"init","ref":null,"payload":{"interface":{"ipv4":"100.64.0.1"},"relays":[]}}`), false)
	f.Add([]byte(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1","join_ref":null}`), false)
	f.Add([]byte(`["1","2","room:lobby","phx_join",{"x":"\u00e9\ud83d\ude00"}]`), true)
	f.Add([]byte(`{"topic":1,"event":[],"payload":{},"ref":{}}`), false)
	f.Add([]byte(`{"topic":"a","event":"b","payload":{"a":[[[[[]]]]]},"ref":1e5}`), false)
	f.Add([]byte(`[[[[[[[[[[[[[[`), true)
	f.Add([]byte("{\"topic\":\"\xff\",\"event\":\"b\",\"payload\":-0.5e-3,\"ref\":0}"), false)
	f.Fuzz(func(t *testing.T, data []byte, v2 bool) {
		fr, err := decodeFrame(data, v2)
		valid := json.Valid(data)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			if !valid || errors.Is(err, errTooDeep) {
				return
			}
			// Valid JSON: it must be mis-shaped by encoding/json's view too.
			if shapeOK(data, v2) {
				t.Fatalf("rejected well-shaped frame %q: %v", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var topic, event string
		var ref, joinRef, payload json.RawMessage
		if v2 {
			var arr []json.RawMessage
			if err := json.Unmarshal(data, &arr); err != nil || len(arr) != 5 {
				t.Fatalf("encoding/json disagrees on V2 shape of %q", data)
			}
			joinRef, ref, payload = arr[0], arr[1], arr[4]
			if json.Unmarshal(arr[2], &topic) != nil || json.Unmarshal(arr[3], &event) != nil {
				t.Fatalf("topic/event not strings in %q", data)
			}
		} else {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatalf("encoding/json cannot decode accepted frame %q: %v", data, err)
			}
			if json.Unmarshal(m["topic"], &topic) != nil || json.Unmarshal(m["event"], &event) != nil {
				t.Fatalf("topic/event not strings in %q", data)
			}
			ref, joinRef, payload = m["ref"], m["join_ref"], m["payload"]
		}
		if string(fr.topic) != topic || string(fr.event) != event {
			t.Fatalf("topic/event %q/%q, encoding/json %q/%q", fr.topic, fr.event, topic, event)
		}
		if !bytes.Equal(fr.payload, payload) {
			t.Fatalf("payload %q, encoding/json %q", fr.payload, payload)
		}
		if norm(ref) != string(fr.ref) || norm(joinRef) != string(fr.joinRef) {
			t.Fatalf("refs %q/%q, encoding/json %q/%q", fr.ref, fr.joinRef, ref, joinRef)
		}
		// Whatever was decoded must re-encode to valid JSON.
		out := appendServerFrame(nil, v2, string(fr.topic), string(fr.event), fr.joinRef, fr.ref, fr.payload)
		if !json.Valid(out) {
			t.Fatalf("re-encoded frame is invalid: %q", out)
		}
	})
}

func norm(raw json.RawMessage) string {
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

func shapeOK(data []byte, v2 bool) bool {
	var topic, event string
	if v2 {
		var arr []json.RawMessage
		if json.Unmarshal(data, &arr) != nil || len(arr) != 5 {
			return false
		}
		return json.Unmarshal(arr[2], &topic) == nil && json.Unmarshal(arr[3], &event) == nil &&
			refShapeOK(arr[0]) && refShapeOK(arr[1])
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return false
	}
	for _, k := range []string{"topic", "event", "payload", "ref"} {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return json.Unmarshal(m["topic"], &topic) == nil && json.Unmarshal(m["event"], &event) == nil &&
		refShapeOK(m["ref"]) && refShapeOK(m["join_ref"])
}

// FuzzScanValue checks the JSON scanner against json.Valid and the reply
// splitter for panics.
func FuzzScanValue(f *testing.F) {
	for _, s := range []string{`{}`, `[1,"a",{"b":null}]`, `"\u12"`, `-01`, `1.`, `1e+`, `tru`, `{"status":"ok","response":{"reason":"x"}}`, "\"\x7f\"", `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end, err := scanValue(data, 0)
		ours := err == nil && skipSpace(data, end) == len(data)
		if err == nil && (end < 0 || end > len(data)) {
			t.Fatalf("end %d out of range", end)
		}
		if ours != json.Valid(data) && !errors.Is(err, errJSONDepth) {
			t.Fatalf("scanValue valid=%v, json.Valid=%v for %q", ours, !ours, data)
		}
		if ours && len(data) > 0 {
			i := skipSpace(data, 0)
			if data[i] == '"' {
				var s string
				if json.Unmarshal(data, &s) == nil && string(stringContent(data[i:end])) != s {
					t.Fatalf("stringContent %q, encoding/json %q", stringContent(data[i:end]), s)
				}
			}
		}
		_, _, _ = replyPayload(data)
		_ = reasonOf(data)
		_, _ = parseRef(data)
	})
}
