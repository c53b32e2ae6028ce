package phoenix

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestClientFrameExact(t *testing.T) {
	topic := appendString(nil, "gateway")
	tests := []struct {
		name    string
		v2      bool
		event   string
		payload string
		ref     uint64
		want    string
	}{
		{"join", false, "phx_join", "", 0, `{"topic":"gateway","event":"phx_join","payload":null,"ref":0}`},
		{"push", false, "authorization_created", `{"ref":"SFMyNTY"}`, 5, `{"topic":"gateway","event":"authorization_created","payload":{"ref":"SFMyNTY"},"ref":5}`},
		{"v2 push", true, "ev", `{}`, 7, `["0","7","gateway","ev",{}]`},
	}
	for _, tt := range tests {
		got := appendClientFrame(nil, tt.v2, topic, tt.event, []byte(tt.payload), tt.ref, 0, true)
		if string(got) != tt.want {
			t.Errorf("%s: got %s want %s", tt.name, got, tt.want)
		}
	}
	hb := appendClientFrame(nil, false, topicPhoenixLit, EventHeartbeat, []byte("{}"), 1, 0, false)
	if want := `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}`; string(hb) != want {
		t.Errorf("heartbeat %s want %s", hb, want)
	}
	hb2 := appendClientFrame(nil, true, topicPhoenixLit, EventHeartbeat, []byte("{}"), 3, 0, false)
	if want := `[null,"3","phoenix","heartbeat",{}]`; string(hb2) != want {
		t.Errorf("v2 heartbeat %s want %s", hb2, want)
	}
}

func TestServerFrameExact(t *testing.T) {
	reply := appendReplyPayload(nil, StatusOK, nil)
	got := appendServerFrame(nil, false, "gateway", EventReply, nil, []byte("0"), reply)
	if want := `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`; string(got) != want {
		t.Errorf("got %s want %s", got, want)
	}
	got = appendServerFrame(nil, false, "gateway", "init", []byte("0"), nil, []byte(`{"a":1}`))
	if want := `{"topic":"gateway","event":"init","ref":null,"payload":{"a":1}}`; string(got) != want {
		t.Errorf("got %s want %s", got, want)
	}
	got = appendServerFrame(nil, true, "room:1", EventReply, []byte(`"1"`), []byte(`"2"`), reply)
	if want := `["1","2","room:1","phx_reply",{"status":"ok","response":{}}]`; string(got) != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		in                             string
		v2                             bool
		topic, event, ref, jr, payload string
		err                            bool
	}{
		{in: `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`,
			topic: "gateway", event: "phx_reply", ref: "0", payload: `{"status":"ok","response":{}}`},
		{in: ` { "ref" : null , "payload":[1,2], "event":"e\u0041", "topic":"t\n", "x":{"y":[]} } `,
			topic: "t\n", event: "eA", payload: `[1,2]`},
		{in: `{"topic":"a","event":"b","payload":1,"ref":"7","join_ref":"3"}`, topic: "a", event: "b", ref: `"7"`, jr: `"3"`, payload: "1"},
		{in: `["1","2","room","ev",{"k":"v"}]`, v2: true, topic: "room", event: "ev", ref: `"2"`, jr: `"1"`, payload: `{"k":"v"}`},
		{in: `[null,null,"room","ev",null]`, v2: true, topic: "room", event: "ev", payload: `null`},
		{in: `{"topic":"a","event":"b","payload":1}`, err: true},          // missing ref
		{in: `{"topic":1,"event":"b","payload":1,"ref":0}`, err: true},    // topic type
		{in: `{"topic":"a","event":"b","payload":1,"ref":{}}`, err: true}, // ref type
		{in: `{"topic":"a","event":"b","payload":1,"ref":0}x`, err: true},
		{in: `{"topic":"a","event":"b","payload":1,"ref":0`, err: true},
		{in: `["1","2","room","ev"]`, v2: true, err: true},
		{in: `["1","2","room","ev",{},6]`, v2: true, err: true},
		{in: `[]`, err: true},
		{in: ``, err: true},
		{in: `{"topic":"a","event":"b","payload":"\x01","ref":0}`, err: true},
	}
	for _, tt := range tests {
		f, err := decodeFrame([]byte(tt.in), tt.v2)
		if tt.err {
			if err == nil || !errors.Is(err, ErrBadFrame) {
				t.Errorf("%q: want ErrBadFrame, got %v", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if string(f.topic) != tt.topic || string(f.event) != tt.event || string(f.ref) != tt.ref ||
			string(f.joinRef) != tt.jr || string(f.payload) != tt.payload {
			t.Errorf("%q: got topic=%q event=%q ref=%q jr=%q payload=%q", tt.in, f.topic, f.event, f.ref, f.joinRef, f.payload)
		}
	}
}

func TestReplyPayloadAndReason(t *testing.T) {
	st, resp, err := replyPayload([]byte(`{"response":{"reason":"unmatched topic"},"status":"error"}`))
	if err != nil || string(st) != "error" || reasonOf(resp) != ReasonUnmatchedTopic {
		t.Fatalf("got %q %q %v", st, resp, err)
	}
	if _, _, err := replyPayload([]byte(`{"response":{}}`)); err == nil {
		t.Error("reply without status accepted")
	}
	if _, _, err := replyPayload([]byte(`[]`)); err == nil {
		t.Error("non-object reply accepted")
	}
	if r := reasonOf([]byte(`{"a":[1,{"reason":"x"}],"reason":"token_expired"}`)); r != "token_expired" {
		t.Errorf("reason %q", r)
	}
	if r := reasonOf([]byte(`"x"`)); r != "" {
		t.Errorf("reason of string = %q", r)
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]uint64{`0`: 0, `42`: 42, `"17"`: 17, `18446744073709551615`: 1<<64 - 1} {
		if got, ok := parseRef([]byte(in)); !ok || got != want {
			t.Errorf("parseRef(%s) = %d %v", in, got, ok)
		}
	}
	for _, in := range []string{``, `-1`, `"a"`, `18446744073709551616`, `1.5`, `""`} {
		if _, ok := parseRef([]byte(in)); ok {
			t.Errorf("parseRef(%s) accepted", in)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "gateway", "a\"b\\c", "\n\r\t\x00\x1f", "héllo ✓", "bad \xff utf8", "<html>&"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q round-trips to %q, encoding/json gives %q", s, back, wantBack)
		}
	}
}

func TestDecodeNoAllocs(t *testing.T) {
	in := []byte(`{"topic":"gateway","event":"phx_reply","ref":12,"payload":{"status":"ok","response":{"x":[1,2,3]}}}`)
	allocs := testing.AllocsPerRun(100, func() {
		f, err := decodeV1(in)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := replyPayload(f.payload); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decode allocates %v times per frame, want 0", allocs)
	}
}
