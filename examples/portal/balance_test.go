package devportal

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/phoenix"
)

// autoGateway answers every create_authorization and counts them.
func autoGateway(t *testing.T, d *device, n *atomic.Int64, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-d.notify:
			}
			for {
				d.mu.Lock()
				var m *phoenix.Message
				for i, x := range d.backlog {
					if x.Event == portal.EventCreateAuthorization {
						m = x
						d.backlog = append(d.backlog[:i], d.backlog[i+1:]...)
						break
					}
				}
				d.mu.Unlock()
				if m == nil {
					break
				}
				var ca portal.CreateAuthorization
				if json.Unmarshal(m.Payload, &ca) != nil {
					t.Error("bad create_authorization")
					return
				}
				b, _ := json.Marshal(portal.AuthorizationRef{Ref: ca.Ref})
				if d.c.Push(portal.EventAuthorizationCreated, b, nil) == nil {
					n.Add(1)
				}
			}
		}
	}()
}

func TestTwoGatewaysShareLoadAndFailOver(t *testing.T) {
	var flip atomic.Int64
	p := startPortal(t, Options{Config: testConfig(t), Intn: func(n int) int { return int(flip.Add(1)) % n }})
	a := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-a")
	b := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-b")
	ia := decodeAs[portal.GatewayInit](t, portal.DecodeGatewayIngress, "init", a.expect("init"))
	ib := decodeAs[portal.GatewayInit](t, portal.DecodeGatewayIngress, "init", b.expect("init"))
	if ia.Interface.IPv4 == ib.Interface.IPv4 {
		t.Fatal("two gateways share an address")
	}
	var na, nb atomic.Int64
	stopA, stopB := make(chan struct{}), make(chan struct{})
	var wgA, wgB sync.WaitGroup
	autoGateway(t, a, &na, stopA, &wgA)
	autoGateway(t, b, &nb, stopB, &wgB)
	t.Cleanup(func() { close(stopB); wgB.Wait(); close(stopA); wgA.Wait() })

	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	web := resourceID(t, decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", cl.expect("init")), "web")
	byGateway := map[string]int{}
	const requests = 40
	for i := 0; i < requests; i++ {
		cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web, ConnectedGatewayIDs: []string{}})
		ac := decodeAs[portal.AuthorizationCreated](t, portal.DecodeClientIngress, "authorization_created", cl.expect("authorization_created"))
		byGateway[ac.GatewayPublicKey]++
	}
	if byGateway[a.key] == 0 || byGateway[b.key] == 0 || byGateway[a.key]+byGateway[b.key] != requests {
		t.Fatalf("load not spread: a=%d b=%d", byGateway[a.key], byGateway[b.key])
	}
	// The counters move right after each answer is pushed.
	waitUntil(t, "answer counters", func() bool { return na.Load()+nb.Load() == requests })

	// A connected gateway is preferred.
	var bID string
	for i := 0; bID == "" && i < 100; i++ {
		cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web})
		ac := decodeAs[portal.AuthorizationCreated](t, portal.DecodeClientIngress, "authorization_created", cl.expect("authorization_created"))
		if ac.GatewayPublicKey == b.key {
			bID = ac.GatewayID
		}
	}
	for i := 0; i < 10; i++ {
		cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web, ConnectedGatewayIDs: []string{bID}})
		ac := decodeAs[portal.AuthorizationCreated](t, portal.DecodeClientIngress, "authorization_created", cl.expect("authorization_created"))
		if ac.GatewayID != bID {
			t.Fatalf("request %d ignored the connected gateway", i)
		}
	}

	// Gateway b goes offline: everything goes to a, even when the client
	// names b as connected.
	b.stop()
	waitUntil(t, "gateway b gone", func() bool { return p.Status().Gateways == 1 })
	for i := 0; i < 20; i++ {
		cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web, ConnectedGatewayIDs: []string{bID}})
		ac := decodeAs[portal.AuthorizationCreated](t, portal.DecodeClientIngress, "authorization_created", cl.expect("authorization_created"))
		if ac.GatewayPublicKey != a.key {
			t.Fatalf("request %d after failover went to %s", i, ac.GatewayID)
		}
	}
}

func TestConnectRejections(t *testing.T) {
	p := startPortal(t, Options{Config: testConfig(t)})
	url := strings.Replace(p.URL(), "ws://", "http://", 1)
	key := newKey(t)
	cases := []struct {
		name, path, token, ua, query string
		status                       int
		code                         string
	}{
		{"missing token", portal.GatewayPath, "", "x gateway/1.6.1", "external_id=a&public_key=" + key, 401, "missing_token"},
		{"bad token", portal.GatewayPath, "nope-nope-nope-nope", "x gateway/1.6.1", "external_id=a&public_key=" + key, 401, "invalid_token"},
		{"client token on gateway path", portal.GatewayPath, aliceToken, "x gateway/1.6.1", "external_id=a&public_key=" + key, 401, "invalid_token"},
		{"no public key", portal.GatewayPath, gwTokenHQ, "x gateway/1.6.1", "external_id=a", 400, "invalid_connect_params"},
		{"no external id", portal.ClientPath, aliceToken, "Ubuntu/24.04 headless-client/1.5.12 (x86_64; 6.8)", "public_key=" + key, 400, "invalid_connect_params"},
		{"client without user agent", portal.ClientPath, aliceToken, "curl", "external_id=a&public_key=" + key, 400, "invalid_connect_params"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url+c.path+"?"+strings.ReplaceAll(c.query, "+", "%2B"), nil)
			req.Header.Set("User-Agent", c.ua)
			if c.token != "" {
				req.Header.Set("X-Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var prob struct {
				Code string `json:"code"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&prob)
			if resp.StatusCode != c.status || prob.Code != c.code {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, prob.Code, c.status, c.code)
			}
		})
	}
	// The first gateway with an external_id wins; a second gets 409.
	connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-dup")
	req, _ := http.NewRequest("GET", url+portal.GatewayPath+"?external_id=gw-dup&public_key="+strings.ReplaceAll(key, "+", "%2B"), nil)
	req.Header.Set("X-Authorization", "Bearer "+gwTokenHQ)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("duplicate gateway: %d", resp.StatusCode)
	}
	// Health.
	resp, err = http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || st.Status != "ok" || st.Gateways != 1 {
		t.Fatalf("healthz %d %+v", resp.StatusCode, st)
	}
}
