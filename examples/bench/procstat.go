package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc times; it is 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuTimes is the system-wide line "cpu ..." of /proc/stat.
type cpuTimes struct {
	total, steal, idle uint64 // idle includes iowait
}

func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var c cpuTimes
	// user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already counted in user, so the first 8 are the total.
	for i := 1; i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		c.total += v
		switch i {
		case 4, 5:
			c.idle += v
		case 8:
			c.steal = v
		}
	}
	return c, nil
}

// stealPercent is the share of CPU time stolen by the hypervisor between
// two readings.
func stealPercent(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * float64(b.steal-a.steal) / float64(b.total-a.total)
}

// busyPercent is the share of all CPUs' time that was not idle between two
// readings: the benchmark's own processes plus everything else on the
// machine (on a shared box, other jobs compete without showing as steal).
func busyPercent(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * (1 - float64(b.idle-a.idle)/float64(b.total-a.total))
}

// procCPUTicks returns utime+stime of a process (all its threads), in
// clock ticks.
func procCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may contain spaces: fields
	// are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ... utime is field 14 and stime 15 of the whole
	// line, i.e. indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + s, nil
}
