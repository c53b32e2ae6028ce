package portal

import "golang.org/x/sys/unix"

func uname() (arch, kernel string) {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "", ""
	}
	return unix.ByteSliceToString(u.Machine[:]), unix.ByteSliceToString(u.Release[:])
}
