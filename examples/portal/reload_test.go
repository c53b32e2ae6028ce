package devportal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/phoenix"
)

const reloadBase = `
account: {slug: acme}
dns: {search_domain: corp.example.com}
sites:
  - {name: hq, gateway_tokens: ["` + gwTokenHQ + `"]}
  - {name: branch, gateway_tokens: ["` + gwTokenBranch + `"]}
actors:
  - {name: alice, groups: [eng], tokens: ["` + aliceToken + `"]}
resources:
  - {name: web, type: cidr, address: 172.20.0.0/16, sites: [hq]}
  - {name: api, type: ip, address: 10.9.9.9, sites: [hq]}
  - {name: wiki, type: dns, address: "*.wiki.corp", sites: [branch]}
policies:
  - {group: eng, resource: web}
  - {group: eng, resource: api}
  - {group: eng, resource: wiki}
relays:
  builtin: {enabled: true, min_port: 42000, max_port: 48000}
`

func writeConfig(t *testing.T, path, y string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *device) events() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.backlog {
		out = append(out, m.Event+" "+string(m.Payload))
	}
	return out
}

func authorize(t *testing.T, cl, gw *device, resourceID string) {
	t.Helper()
	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: resourceID})
	ca := decodeAs[portal.CreateAuthorization](t, portal.DecodeGatewayIngress, "create_authorization", gw.expect("create_authorization"))
	if _, err := gw.request(portal.EventAuthorizationCreated, portal.AuthorizationRef{Ref: ca.Ref}); err != nil {
		t.Fatal(err)
	}
	cl.expect("authorization_created")
}

func TestReloadPushesDeltas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portal.yaml")
	writeConfig(t, path, reloadBase)
	p := startPortal(t, Options{ConfigPath: path})
	gw := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-1")
	gw.expect("init")
	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	ci := decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", cl.expect("init"))
	web, api, wiki := resourceID(t, ci, "web"), resourceID(t, ci, "api"), resourceID(t, ci, "wiki")
	authorize(t, cl, gw, web)
	authorize(t, cl, gw, api)

	// New config: web's policy gone, api gets a filter, wiki moves site,
	// db is new, DNS and relays change.
	next := strings.Replace(reloadBase, "  - {group: eng, resource: web}\n", "  - {group: eng, resource: db}\n", 1)
	next = strings.Replace(next, "address: 10.9.9.9, sites: [hq]}", `address: 10.9.9.9, sites: [hq], filters: [{protocol: udp, ports: "53"}]}`, 1)
	next = strings.Replace(next, `sites: [branch]}`, `sites: [hq]}
  - {name: db, type: cidr, address: 10.60.0.0/16, sites: [hq]}`, 1)
	next = strings.Replace(next, "corp.example.com", "new.example.com", 1)
	next = strings.Replace(next, "max_port: 48000}", "max_port: 48000}\n  external: [{name: coturn, addr: 127.0.0.1:3479, username: u, password: p}]", 1)
	writeConfig(t, path, next)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}

	// Client: deletes before creates; wiki (site change) is delete + create.
	waitUntil(t, "client pushes", func() bool { return cl.count("relays_presence") == 1 })
	lastDelete, firstCreate := -1, -1
	for i, e := range cl.events() {
		if strings.HasPrefix(e, "resource_deleted ") {
			lastDelete = i
		}
		if strings.HasPrefix(e, "resource_created_or_updated ") && firstCreate < 0 {
			firstCreate = i
		}
	}
	if lastDelete < 0 || firstCreate < 0 || lastDelete > firstCreate {
		t.Fatalf("deletes must come before creates: %v", cl.events())
	}
	if got := string(cl.expect("resource_deleted")); got != `"`+web+`"` && got != `"`+wiki+`"` {
		t.Fatalf("first delete %s", got)
	}
	cl.expect("resource_deleted")
	created := map[string]*portal.ClientResource{}
	for i := 0; i < 3; i++ {
		r := decodeAs[portal.ClientResource](t, portal.DecodeClientIngress, "resource_created_or_updated", cl.expect("resource_created_or_updated"))
		created[r.Name] = r
	}
	if created["db"] == nil || created["wiki"] == nil || created["api"] == nil || len(created["api"].Filters) != 1 {
		t.Fatalf("created %v", created)
	}
	if len(created["wiki"].Sites) != 1 || created["wiki"].Sites[0].Name != "hq" {
		t.Fatalf("wiki sites %+v", created["wiki"].Sites)
	}
	cc := decodeAs[portal.ConfigChanged](t, portal.DecodeClientIngress, "config_changed", cl.expect("config_changed"))
	if *cc.Interface.SearchDomain != "new.example.com" {
		t.Fatalf("config_changed %+v", cc)
	}
	rp := decodeAs[portal.RelaysPresence](t, portal.DecodeClientIngress, "relays_presence", cl.expect("relays_presence"))
	if len(rp.Connected) != 2 || rp.Connected[1].Addr != "127.0.0.1:3479" || rp.Connected[1].Username != "u" {
		t.Fatalf("client relays_presence %+v", rp)
	}
	if n := cl.count("resource_deleted") + cl.count("resource_created_or_updated"); n != 0 {
		t.Fatalf("extra resource pushes: %v", cl.events())
	}

	// Gateway: web revoked, api updated, relays.
	ra := decodeAs[portal.RejectAccess](t, portal.DecodeGatewayIngress, "reject_access", gw.expect("reject_access"))
	if ra.ResourceID != web {
		t.Fatalf("reject_access %+v", ra)
	}
	ru := decodeAs[portal.GatewayResource](t, portal.DecodeGatewayIngress, "resource_updated", gw.expect("resource_updated"))
	if ru.ID != api || ru.Address != "10.9.9.9/32" || len(ru.Filters) != 1 || ru.Filters[0].PortStart != 53 {
		t.Fatalf("resource_updated %+v", ru)
	}
	gw.expect("relays_presence")
	if gw.count("reject_access") != 0 || p.Status().Authorizations != 1 {
		t.Fatalf("gateway extras %v, status %+v", gw.events(), p.Status())
	}

	// The revoked resource is now forbidden.
	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web})
	f := decodeAs[portal.AuthorizationCreationFailed](t, portal.DecodeClientIngress, "authorization_creation_failed", cl.expect("authorization_creation_failed"))
	if f.Reason != portal.ReasonForbidden {
		t.Fatalf("%+v", f)
	}

	// An invalid file is rejected with a precise error; the running
	// configuration stays (db still works).
	writeConfig(t, path, strings.Replace(next, "10.60.0.0/16", "10.60.0.1/16", 1))
	err := p.Reload()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "resources[3].address" || !strings.Contains(err.Error(), "host bits") {
		t.Fatalf("reload error %v", err)
	}
	authorize(t, cl, gw, created["db"].ID)

	// Removing alice's token disconnects her with token_expired (fatal for
	// the device).
	writeConfig(t, path, strings.Replace(next, `tokens: ["`+aliceToken+`"]`, `tokens: ["client-token-alice-rotated"]`, 1))
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cl.done:
		cl.done <- err
		if !errors.Is(err, phoenix.ErrInvalidToken) {
			t.Fatalf("client ended with %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("client not disconnected")
	}
	waitUntil(t, "client gone", func() bool { return p.Status().Clients == 0 })
}
