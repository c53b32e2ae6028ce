package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capNetAdmin is CAP_NET_ADMIN's bit in the capability sets.
const capNetAdmin = 12

// ErrNoNetAdmin is wrapped by CheckNetAdmin's error.
var ErrNoNetAdmin = errors.New("needs root or CAP_NET_ADMIN")

// CheckNetAdmin returns nil when the process runs as root or holds
// CAP_NET_ADMIN in its effective set, else an error whose message is the
// exact fix: `sudo setcap cap_net_admin+eip <exe>`, or running as root.
// exe is the binary's path (os.Executable()).
func CheckNetAdmin(exe string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	ok, err := hasEffectiveCap("/proc/self/status", capNetAdmin)
	if err == nil && ok {
		return nil
	}
	return errorForNoCap(exe)
}

func errorForNoCap(exe string) error {
	return fmt.Errorf("%w: run it as root, or grant the capability with: sudo setcap cap_net_admin+eip %s", ErrNoNetAdmin, exe)
}

// hasEffectiveCap reads CapEff from a /proc/<pid>/status file.
func hasEffectiveCap(statusPath string, bit uint) (bool, error) {
	f, err := os.Open(statusPath)
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("CapEff %q: %w", v, err)
			}
			return caps&(1<<bit) != 0, nil
		}
	}
	if err := s.Err(); err != nil {
		return false, err
	}
	return false, errors.New("no CapEff line")
}
