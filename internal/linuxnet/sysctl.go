package linuxnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// Sysctl sets key (dotted form, e.g. "net.ipv4.ip_forward") to value.
func Sysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// ReadSysctl returns key's value, trimmed.
func ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// RaiseSocketBuffers raises net.core.rmem_max and wmem_max to at least rmem
// and wmem bytes (never lowers them), so the UDP sockets can get the
// buffers they ask for (reference §6.1 startup step 2).
func RaiseSocketBuffers(rmem, wmem int) error {
	for _, kv := range []struct {
		key string
		min int
	}{{"net.core.rmem_max", rmem}, {"net.core.wmem_max", wmem}} {
		cur, err := ReadSysctl(kv.key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(cur)
		if err != nil {
			return fmt.Errorf("sysctl %s=%q: %w", kv.key, cur, err)
		}
		if n >= kv.min {
			continue
		}
		if err := Sysctl(kv.key, strconv.Itoa(kv.min)); err != nil {
			return err
		}
	}
	return nil
}

// EnableForwarding sets the sysctls a gateway needs to forward between its
// TUN and the resources (reference §6.1, firezone-gateway-init):
// net.ipv4.ip_forward=1, net.ipv4.conf.all.src_valid_mark=1,
// net.ipv6.conf.all.disable_ipv6=0, net.ipv6.conf.{all,default}.forwarding=1.
// IPv6 settings are skipped when the kernel has no IPv6.
func EnableForwarding() error {
	if err := Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if err := Sysctl("net.ipv4.conf.all.src_valid_mark", "1"); err != nil {
		return err
	}
	if _, err := os.Stat(sysctlPath("net.ipv6.conf.all.forwarding")); err != nil {
		return nil
	}
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1"} {
		key, val, _ := strings.Cut(k, "=")
		if err := Sysctl(key, val); err != nil {
			return err
		}
	}
	return nil
}
