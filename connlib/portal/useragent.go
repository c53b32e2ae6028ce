package portal

import (
	"bufio"
	"os"
	"strings"
)

// Components of a User-Agent. The portal derives the device version from
// the first "<component>/" token and rejects clients without a valid one.
const (
	ComponentGateway        = "gateway"
	ComponentHeadlessClient = "headless-client"
)

// OSInfo describes the host for the User-Agent.
type OSInfo struct {
	Type    string // e.g. "Ubuntu"
	Version string // e.g. "24.04"
	Arch    string // e.g. "x86_64"
	Kernel  string // e.g. "6.8.0-45-generic"
}

// UserAgent formats "<os>/<ver> <component>/<version> (<arch>; <kernel>)",
// e.g. "Ubuntu/24.04 gateway/1.6.1 (x86_64; 6.8.0-45-generic)", with
// non-ASCII and control characters stripped. Empty OS fields become
// "unknown".
func UserAgent(os OSInfo, component, version string) string {
	f := func(s string) string {
		s = asciiOnly(s)
		if s == "" {
			return "unknown"
		}
		return s
	}
	return f(os.Type) + "/" + f(os.Version) + " " + asciiOnly(component) + "/" + asciiOnly(version) +
		" (" + f(os.Arch) + "; " + f(os.Kernel) + ")"
}

func asciiOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

// HostOSInfo reads /etc/os-release (NAME, VERSION_ID) and uname.
func HostOSInfo() OSInfo {
	var info OSInfo
	if f, err := os.Open("/etc/os-release"); err == nil {
		info.Type, info.Version = parseOSRelease(bufio.NewScanner(f))
		f.Close()
	}
	info.Arch, info.Kernel = uname()
	return info
}

func parseOSRelease(sc *bufio.Scanner) (name, version string) {
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "NAME":
			// "Ubuntu", "Debian GNU/Linux": the first word, as os_type.
			name, _, _ = strings.Cut(v, " ")
			name = strings.ReplaceAll(name, "/", "-")
		case "VERSION_ID":
			version = v
		}
	}
	return name, version
}
