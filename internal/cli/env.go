package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The helpers below give flags their environment-variable defaults, as
// Firezone's binaries do (clap `env`): the flag wins, then the variable,
// then the built-in default. A malformed variable is an error, never
// silently ignored.

// EnvString returns $name or def.
func EnvString(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// EnvBool parses $name (true/false/1/0/yes/no) or returns def.
func EnvBool(name string, def bool) (bool, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return def, fmt.Errorf("%s=%q: not a boolean", name, v)
}

// EnvInt parses $name as an integer or returns def.
func EnvInt(name string, def int) (int, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: not an integer", name, v)
	}
	return n, nil
}

// EnvDuration parses $name as a duration ("24h", "90m", "30s"; a plain
// number is seconds) or returns def.
func EnvDuration(name string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	d, err := ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: %w", name, v, err)
	}
	return d, nil
}

// ParseDuration accepts Go durations, humantime-style days ("1d", "2d 3h")
// and plain seconds.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	for _, part := range strings.Fields(s) {
		if d, ok := strings.CutSuffix(part, "d"); ok {
			n, err := strconv.ParseUint(d, 10, 16)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			total += time.Duration(n) * 24 * time.Hour
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return total, nil
}
