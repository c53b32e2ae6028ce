//go:build !linux

package portal

import "runtime"

func uname() (arch, kernel string) { return runtime.GOARCH, "" }
