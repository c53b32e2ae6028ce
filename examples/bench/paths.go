package main

import (
	"fmt"
	"slices"
	"strings"
)

// Path names the bench knows, in the order it measures them.
const (
	pathWireGuard = "wireguard-go"
	pathVeth      = "veth"
)

// allPathNames lists every path --paths accepts.
func allPathNames() []string {
	names := []string{pathWireGuard, pathVeth}
	for _, g := range gozonePathNames {
		names = append(names, g.name)
	}
	return names
}

// parsePaths turns --paths (comma-separated, blanks ignored) into the set
// of paths to run; "" selects all of them (nil). An unknown name is an
// error that lists the valid ones.
func parsePaths(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	valid := allPathNames()
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(valid, n) {
			return nil, fmt.Errorf("--paths: unknown path %q (valid: %s)", n, strings.Join(valid, ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--paths: no path named (valid: %s)", strings.Join(valid, ", "))
	}
	return out, nil
}

// selected reports whether the path runs under cfg (every path when
// --paths was not given).
func (c config) selected(name string) bool {
	return len(c.Paths) == 0 || slices.Contains(c.Paths, name)
}
