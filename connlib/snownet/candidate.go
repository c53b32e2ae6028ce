package snownet

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/ice/v3"
)

// Candidate errors.
var (
	ErrCandidateNotUDP = errors.New("snownet: candidate is not UDP")
	ErrBadCandidate    = errors.New("snownet: unparseable candidate")
)

const candidatePrefix = "candidate:"

// marshalCandidate renders c the way Firezone signals candidates: one SDP
// attribute value with the "candidate:" prefix pion leaves out.
func marshalCandidate(c ice.Candidate) string {
	return candidatePrefix + c.Marshal()
}

// parseCandidate accepts "candidate:...", "a=candidate:..." or pion's bare
// form, and refuses anything but UDP.
func parseCandidate(sdp string) (ice.Candidate, error) {
	s := strings.TrimSpace(sdp)
	s = strings.TrimPrefix(s, "a=")
	s = strings.TrimPrefix(s, candidatePrefix)
	if s == "" {
		return nil, ErrBadCandidate
	}
	c, err := ice.UnmarshalCandidate(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCandidate, err)
	}
	if !c.NetworkType().IsUDP() {
		return nil, ErrCandidateNotUDP
	}
	return c, nil
}

// ParseCandidates splits a list of SDP candidate strings into the UDP ones
// pion accepts, normalised to the "candidate:" form, and the errors of the
// rest; bad candidates are skipped individually.
func ParseCandidates(sdps []string) (ok []string, errs []error) {
	for _, s := range sdps {
		c, err := parseCandidate(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", s, err))
			continue
		}
		ok = append(ok, marshalCandidate(c))
	}
	return ok, errs
}
