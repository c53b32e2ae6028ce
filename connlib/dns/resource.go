package dns

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// IPStack limits which address families a DNS resource is reachable over
// (the portal's "ip_stack"). The zero value is IPStackDual, which is also
// what a resource without the field gets.
type IPStack uint8

const (
	IPStackDual     IPStack = iota // A and AAAA answers
	IPStackIPv4Only                // A answers only; AAAA is NOERROR with no records
	IPStackIPv6Only                // AAAA answers only; A is NOERROR with no records
)

// ParseIPStack maps the portal's spelling ("dual", "ipv4_only", "ipv6_only";
// "" for absent) to an IPStack. Unknown values yield IPStackDual and false, so
// a newer portal never makes a resource unreachable.
func ParseIPStack(s string) (IPStack, bool) {
	switch s {
	case "", "dual":
		return IPStackDual, true
	case "ipv4_only":
		return IPStackIPv4Only, true
	case "ipv6_only":
		return IPStackIPv6Only, true
	}
	return IPStackDual, false
}

// String returns the portal's spelling.
func (s IPStack) String() string {
	switch s {
	case IPStackIPv4Only:
		return "ipv4_only"
	case IPStackIPv6Only:
		return "ipv6_only"
	default:
		return "dual"
	}
}

// IPv4 reports whether A answers are given.
func (s IPStack) IPv4() bool { return s != IPStackIPv6Only }

// IPv6 reports whether AAAA answers are given.
func (s IPStack) IPv6() bool { return s != IPStackIPv4Only }

// Resource is a DNS resource as the stub resolver needs it.
type Resource struct {
	ID      string  // opaque, typically the portal's UUID
	Address string  // pattern, see Pattern
	IPStack IPStack // which families get answers
}

type resourceEntry struct {
	id      string
	pattern Pattern
	stack   IPStack
}

// resourceSet holds DNS resources sorted from most to least specific
// pattern, so the first match is the winner. Not safe for concurrent use.
type resourceSet struct {
	entries []resourceEntry
}

func compareEntries(a, b resourceEntry) int {
	if c := ComparePatterns(a.pattern, b.pattern); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// upsert adds or replaces the resource with r.ID. It returns the previous
// entry (if any) so callers can tell what changed.
func (s *resourceSet) upsert(r Resource) (prev resourceEntry, existed bool, err error) {
	p, err := ParsePattern(r.Address)
	if err != nil {
		return resourceEntry{}, false, fmt.Errorf("resource %s: %w", r.ID, err)
	}
	if r.ID == "" {
		return resourceEntry{}, false, fmt.Errorf("resource %q: empty ID", r.Address)
	}
	prev, existed = s.remove(r.ID)
	e := resourceEntry{id: r.ID, pattern: p, stack: r.IPStack}
	i, _ := slices.BinarySearchFunc(s.entries, e, compareEntries)
	s.entries = slices.Insert(s.entries, i, e)
	return prev, existed, nil
}

func (s *resourceSet) remove(id string) (resourceEntry, bool) {
	for i, e := range s.entries {
		if e.id == id {
			s.entries = slices.Delete(s.entries, i, i+1)
			return e, true
		}
	}
	return resourceEntry{}, false
}

// match returns the most specific resource whose pattern matches name.
func (s *resourceSet) match(name []byte) (*resourceEntry, bool) {
	var l nameLabels
	if !split(&l, name) {
		return nil, false
	}
	for i := range s.entries {
		if matchSplit(s.entries[i].pattern, name, &l) {
			return &s.entries[i], true
		}
	}
	return nil, false
}

// Matcher picks the DNS resource for a name: the most specific matching
// pattern (see ComparePatterns). It is the resolver's rule exposed on its own,
// e.g. for a gateway that checks a client's assigned_ips domain against its
// resources. A Matcher is immutable and safe for concurrent use.
type Matcher struct {
	set resourceSet
}

// NewMatcher compiles resources. Resources with an invalid address are left
// out and reported in the returned error (all of them, joined); the Matcher
// holds the valid ones. A later resource with the same ID replaces an
// earlier one.
func NewMatcher(resources []Resource) (*Matcher, error) {
	m := &Matcher{}
	var errs []error
	for _, r := range resources {
		if _, _, err := m.set.upsert(r); err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}

// Match returns the winning resource for name, if any. It does not allocate.
func (m *Matcher) Match(name string) (Resource, bool) {
	e, ok := m.set.matchString(name)
	if !ok {
		return Resource{}, false
	}
	return Resource{ID: e.id, Address: e.pattern.raw, IPStack: e.stack}, true
}

func (s *resourceSet) index(id string) int {
	for i := range s.entries {
		if s.entries[i].id == id {
			return i
		}
	}
	return -1
}

func (s *resourceSet) matchString(name string) (*resourceEntry, bool) {
	var l nameLabels
	if !split(&l, name) {
		return nil, false
	}
	for i := range s.entries {
		if matchSplit(s.entries[i].pattern, name, &l) {
			return &s.entries[i], true
		}
	}
	return nil, false
}
