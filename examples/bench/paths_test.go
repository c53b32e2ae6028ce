package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParsePaths(t *testing.T) {
	all, err := parsePaths("")
	if err != nil || all != nil {
		t.Fatalf("empty: %v %v", all, err)
	}
	if c := (config{}); !c.selected(pathVeth) || !c.selected("gozone-relayed") {
		t.Error("no --paths must select every path")
	}
	got, err := parsePaths(" gozone-relayed, wireguard-go,,gozone-relayed ")
	if err != nil || !slices.Equal(got, []string{"gozone-relayed", pathWireGuard}) {
		t.Fatalf("got %v %v", got, err)
	}
	c := config{Paths: got}
	if !c.selected("gozone-relayed") || c.selected(pathVeth) || c.selected("gozone-direct-q1") {
		t.Errorf("selection wrong: %v", got)
	}
	for _, bad := range []string{"nope", "veth,gozone-direct", ","} {
		_, err := parsePaths(bad)
		if err == nil {
			t.Errorf("%q: no error", bad)
			continue
		}
		for _, n := range allPathNames() {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%q: error %q does not list %s", bad, err, n)
			}
		}
	}
	for _, n := range []string{"wireguard-go", "veth", "gozone-direct-q1", "gozone-direct-q2", "gozone-relayed"} {
		if !slices.Contains(allPathNames(), n) {
			t.Errorf("%s is not a valid path name", n)
		}
	}
}
