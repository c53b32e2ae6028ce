package routing

import (
	"net/netip"
	"slices"
)

// comparePrefix orders prefixes IPv4 first, then by address, then by
// length: the order of every route list this package returns.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// normalizeRoutes masks, sorts and de-duplicates ps in place, dropping
// invalid prefixes.
func normalizeRoutes(ps []netip.Prefix) []netip.Prefix {
	out := ps[:0]
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// DiffRoutes returns the routes in next but not in prev (added) and those
// in prev but not in next (removed), each sorted. The inputs need not be
// sorted or unique and are not modified.
func DiffRoutes(prev, next []netip.Prefix) (added, removed []netip.Prefix) {
	a := normalizeRoutes(slices.Clone(prev))
	b := normalizeRoutes(slices.Clone(next))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b):
			removed = append(removed, a[i])
			i++
		case i == len(a):
			added = append(added, b[j])
			j++
		default:
			switch c := comparePrefix(a[i], b[j]); {
			case c == 0:
				i++
				j++
			case c < 0:
				removed = append(removed, a[i])
				i++
			default:
				added = append(added, b[j])
				j++
			}
		}
	}
	return added, removed
}
