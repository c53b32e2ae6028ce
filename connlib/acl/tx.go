package acl

import (
	"net/netip"
	"time"
)

// Tx is a batch of changes to a Table, valid only inside the Update call
// that passed it. Changes are visible to checkers when Update returns.
type Tx struct {
	t      *Table
	dirty  map[*clientState]struct{}
	shards map[int]map[ClientID]*Client // index changes; nil value: removed
}

// Update runs fn with a Tx and then publishes every affected client's new
// snapshot. fn must not call other methods of t (it would deadlock).
func (t *Table) Update(fn func(tx *Tx)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tx := &Tx{t: t, dirty: map[*clientState]struct{}{}, shards: map[int]map[ClientID]*Client{}}
	fn(tx)
	for cs := range tx.dirty {
		if !cs.removed {
			t.rebuild(cs)
		}
	}
	for sh, changes := range tx.shards {
		old := *t.shards[sh].Load()
		m := make(map[ClientID]*Client, len(old)+len(changes))
		for k, v := range old {
			m[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		t.shards[sh].Store(&m)
	}
}

func (tx *Tx) touch(cs *clientState) { tx.dirty[cs] = struct{}{} }

func (tx *Tx) index(id ClientID, c *Client) {
	sh := shardOf(id)
	if tx.shards[sh] == nil {
		tx.shards[sh] = map[ClientID]*Client{}
	}
	tx.shards[sh][id] = c
}

// UpsertClient adds client id or updates its tunnel addresses, and returns
// its handle (usable once Update returns).
func (tx *Tx) UpsertClient(id ClientID, v4, v6 netip.Addr) *Client {
	t := tx.t
	cs := t.clients[id]
	if cs == nil {
		cs = &clientState{
			handle:  &Client{t: t},
			auths:   map[ResourceID]int64{},
			proxies: map[ResourceID]map[string][]netip.Addr{},
		}
		t.clients[id] = cs
		tx.index(id, cs.handle)
	}
	cs.v4, cs.v6 = v4.Unmap(), v6
	tx.touch(cs)
	return cs.handle
}

// RemoveClient forgets client id and everything it was authorized for.
// Its handle's checks return DropUnknownClient from now on.
func (tx *Tx) RemoveClient(id ClientID) {
	t := tx.t
	cs := t.clients[id]
	if cs == nil {
		return
	}
	for rid := range cs.auths {
		if rs := t.resources[rid]; rs != nil {
			delete(rs.holders, id)
		}
	}
	delete(t.clients, id)
	cs.removed = true
	cs.handle.snap.Store(nil)
	tx.index(id, nil)
}

// UpsertResource adds or updates a resource (portal create_authorization
// and resource_updated); every client holding it sees the change.
func (tx *Tx) UpsertResource(r Resource) error {
	switch r.Kind {
	case KindCIDR:
		if !r.Prefix.IsValid() {
			return ErrInvalidResource
		}
		r.Prefix = netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits()).Masked()
		if !r.Prefix.IsValid() {
			return ErrInvalidResource
		}
	case KindDNS, KindInternet:
		r.Prefix = netip.Prefix{}
	default:
		return ErrInvalidResource
	}
	r.Filters = append([]Filter(nil), r.Filters...)
	t := tx.t
	rs := t.resources[r.ID]
	if rs == nil {
		rs = &resourceState{holders: map[ClientID]struct{}{}}
		t.resources[r.ID] = rs
	}
	rs.r, rs.filter = r, compileFilters(r.Filters)
	for cid := range rs.holders {
		tx.touch(t.clients[cid])
	}
	return nil
}

// RemoveResource forgets a resource and every authorization for it.
func (tx *Tx) RemoveResource(id ResourceID) {
	t := tx.t
	rs := t.resources[id]
	if rs == nil {
		return
	}
	delete(t.resources, id)
	for cid := range rs.holders {
		cs := t.clients[cid]
		delete(cs.auths, id)
		tx.touch(cs)
	}
}

// Authorize grants client access to resource until expires (zero: never).
// Both must be known. Authorizing again updates the expiry.
func (tx *Tx) Authorize(client ClientID, resource ResourceID, expires time.Time) error {
	t := tx.t
	cs, rs := t.clients[client], t.resources[resource]
	if cs == nil {
		return ErrUnknownClient
	}
	if rs == nil {
		return ErrUnknownResource
	}
	cs.auths[resource] = expiryNanos(expires)
	rs.holders[client] = struct{}{}
	tx.touch(cs)
	return nil
}

func expiryNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1
}

// Revoke removes client's authorization for resource (portal
// reject_access) and returns how many authorizations the client still has
// (at 0 the session closes the connection with goodbye).
func (tx *Tx) Revoke(client ClientID, resource ResourceID) (remaining int, err error) {
	t := tx.t
	cs := t.clients[client]
	if cs == nil {
		return 0, ErrUnknownClient
	}
	if _, ok := cs.auths[resource]; ok {
		delete(cs.auths, resource)
		if rs := t.resources[resource]; rs != nil {
			delete(rs.holders, client)
		}
		tx.touch(cs)
	}
	return len(cs.auths), nil
}

// SetProxyIPs records the proxy IPs client assigned to domain of DNS
// resource resource (the p2p assigned_ips message). Empty addrs forgets
// the domain. They take effect while the client is authorized for the
// resource.
func (tx *Tx) SetProxyIPs(client ClientID, resource ResourceID, domain string, addrs []netip.Addr) error {
	cs := tx.t.clients[client]
	if cs == nil {
		return ErrUnknownClient
	}
	doms := cs.proxies[resource]
	if len(addrs) == 0 {
		delete(doms, domain)
		if len(doms) == 0 {
			delete(cs.proxies, resource)
		}
	} else {
		if doms == nil {
			doms = map[string][]netip.Addr{}
			cs.proxies[resource] = doms
		}
		doms[domain] = append([]netip.Addr(nil), addrs...)
	}
	tx.touch(cs)
	return nil
}

// RetainAuthorizations applies the portal's init list: every known
// client keeps exactly the listed authorizations (for known resources),
// with the listed expiries. Entries for unknown clients or resources are
// ignored. It returns the known clients left without any authorization.
func (tx *Tx) RetainAuthorizations(auths []Authorization) (emptied []ClientID) {
	t := tx.t
	want := map[ClientID]map[ResourceID]int64{}
	for _, a := range auths {
		if t.clients[a.Client] == nil || t.resources[a.Resource] == nil {
			continue
		}
		if want[a.Client] == nil {
			want[a.Client] = map[ResourceID]int64{}
		}
		want[a.Client][a.Resource] = expiryNanos(a.Expires)
	}
	for cid, cs := range t.clients {
		for rid := range cs.auths {
			if rs := t.resources[rid]; rs != nil {
				delete(rs.holders, cid)
			}
		}
		cs.auths = want[cid]
		if cs.auths == nil {
			cs.auths = map[ResourceID]int64{}
			emptied = append(emptied, cid)
		}
		for rid := range cs.auths {
			t.resources[rid].holders[cid] = struct{}{}
		}
		tx.touch(cs)
	}
	return emptied
}

// ExpireAuthorizations removes authorizations that expired at or before
// now (checks already refuse them; this frees them) and returns the
// clients that lost their last authorization in this call.
func (tx *Tx) ExpireAuthorizations(now time.Time) (emptied []ClientID) {
	t := tx.t
	n := now.UnixNano()
	for cid, cs := range t.clients {
		changed := false
		for rid, exp := range cs.auths {
			if exp != 0 && n >= exp {
				delete(cs.auths, rid)
				if rs := t.resources[rid]; rs != nil {
					delete(rs.holders, cid)
				}
				changed = true
			}
		}
		if changed {
			tx.touch(cs)
			if len(cs.auths) == 0 {
				emptied = append(emptied, cid)
			}
		}
	}
	return emptied
}

// Single-change shorthands: each is one Update with one Tx call.

// UpsertClient is Tx.UpsertClient in its own Update.
func (t *Table) UpsertClient(id ClientID, v4, v6 netip.Addr) (c *Client) {
	t.Update(func(tx *Tx) { c = tx.UpsertClient(id, v4, v6) })
	return c
}

// RemoveClient is Tx.RemoveClient in its own Update.
func (t *Table) RemoveClient(id ClientID) { t.Update(func(tx *Tx) { tx.RemoveClient(id) }) }

// UpsertResource is Tx.UpsertResource in its own Update.
func (t *Table) UpsertResource(r Resource) (err error) {
	t.Update(func(tx *Tx) { err = tx.UpsertResource(r) })
	return err
}

// RemoveResource is Tx.RemoveResource in its own Update.
func (t *Table) RemoveResource(id ResourceID) { t.Update(func(tx *Tx) { tx.RemoveResource(id) }) }

// Authorize is Tx.Authorize in its own Update.
func (t *Table) Authorize(client ClientID, resource ResourceID, expires time.Time) (err error) {
	t.Update(func(tx *Tx) { err = tx.Authorize(client, resource, expires) })
	return err
}

// Revoke is Tx.Revoke in its own Update.
func (t *Table) Revoke(client ClientID, resource ResourceID) (remaining int, err error) {
	t.Update(func(tx *Tx) { remaining, err = tx.Revoke(client, resource) })
	return remaining, err
}

// SetProxyIPs is Tx.SetProxyIPs in its own Update.
func (t *Table) SetProxyIPs(client ClientID, resource ResourceID, domain string, addrs []netip.Addr) (err error) {
	t.Update(func(tx *Tx) { err = tx.SetProxyIPs(client, resource, domain, addrs) })
	return err
}

// RetainAuthorizations is Tx.RetainAuthorizations in its own Update.
func (t *Table) RetainAuthorizations(auths []Authorization) (emptied []ClientID) {
	t.Update(func(tx *Tx) { emptied = tx.RetainAuthorizations(auths) })
	return emptied
}

// ExpireAuthorizations is Tx.ExpireAuthorizations in its own Update.
func (t *Table) ExpireAuthorizations(now time.Time) (emptied []ClientID) {
	t.Update(func(tx *Tx) { emptied = tx.ExpireAuthorizations(now) })
	return emptied
}
