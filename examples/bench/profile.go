package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// --profile DIR: every gozone deployment's gateway and client write a pprof
// CPU profile (internal/cli, GOZONE_CPU_PROFILE) to
// DIR/<path>-gateway.pprof and DIR/<path>-client.pprof. Profiling runs
// from a SIGUSR2 the bench sends just before the first throughput run to a
// second one just after the last (GOZONE_CPU_PROFILE_SIGUSR2), so the
// profiles cover the throughput runs and not start-up or the set-up
// probes. Paths alternate within rounds, so a process also idles in its
// window while the other paths run; idle time takes no CPU samples. The
// clients the set-up probes restart are not profiled (they would
// overwrite the file). At the end the bench stops every gozone process
// with SIGTERM and waits, so the files are complete; the binaries are
// copied to DIR for `go tool pprof -list`.

// profileGrace is how long a profiled process may take to exit after
// SIGTERM before it is killed.
const profileGrace = 15 * time.Second

// profileFiles are where one deployment's processes write their profiles.
func profileFiles(dir, path string) (gateway, client string) {
	return filepath.Join(dir, path+"-gateway.pprof"), filepath.Join(dir, path+"-client.pprof")
}

// profileEnv is the environment that makes a binary profile into file.
func profileEnv(file string) []string {
	return []string{"GOZONE_CPU_PROFILE=" + file, "GOZONE_CPU_PROFILE_SIGUSR2=true"}
}

// profiledDeploy is a deployment whose processes profile.
type profiledDeploy struct {
	path *benchPath
	d    *gozoneDeploy
}

// signalProfiles sends SIGUSR2 to the gateway and the profiled client of
// every deployment (first call: start, second: write the profile).
func signalProfiles(ds []profiledDeploy) []string {
	var problems []string
	for _, pd := range ds {
		for _, p := range []struct {
			name string
			pid  int
		}{{"gateway", pd.d.gateway.Pid()}, {"client", pd.d.profiledClientPid}} {
			if err := syscall.Kill(p.pid, syscall.SIGUSR2); err != nil {
				problems = append(problems, fmt.Sprintf("%s %s: SIGUSR2 for the CPU profile: %v", pd.path.Name, p.name, err))
			}
		}
	}
	return problems
}

// finishProfiles stops every profiled deployment gracefully (client,
// gateway, then portal), copies the binaries next to the profiles and
// records the files that hold a profile.
func finishProfiles(ctx context.Context, rep *report, ds []profiledDeploy, bins gozoneBins, dir string) {
	for _, pd := range ds {
		for _, p := range []struct {
			name string
			proc interface {
				Pid() int
				Done() <-chan struct{}
				Stop() error
			}
		}{{"client", pd.d.client}, {"gateway", pd.d.gateway}, {"portal", pd.d.portal}} {
			select {
			case <-p.proc.Done():
				continue
			default:
			}
			_ = syscall.Kill(p.proc.Pid(), syscall.SIGTERM)
			select {
			case <-p.proc.Done():
			case <-time.After(profileGrace):
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s: still running %v after SIGTERM, killed (its profile may be incomplete)", pd.path.Name, p.name, profileGrace))
			case <-ctx.Done():
			}
			_ = p.proc.Stop()
		}
		gw, cl := profileFiles(dir, pd.path.Name)
		pd.path.Profiles = map[string]string{}
		for name, f := range map[string]string{"gateway": gw, "client": cl} {
			if st, err := os.Stat(f); err != nil || st.Size() == 0 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s: no CPU profile in %s", pd.path.Name, name, f))
				continue
			}
			pd.path.Profiles[name] = f
		}
	}
	for _, b := range []string{bins.gateway, bins.client} {
		if err := copyFile(b, filepath.Join(dir, filepath.Base(b))); err != nil {
			rep.Problems = append(rep.Problems, "copying the binary for pprof: "+err.Error())
		}
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// printProfiles writes where the profiles are and how to read them.
func printProfiles(w io.Writer, rep *report) {
	if rep.ProfileDir == "" {
		return
	}
	fmt.Fprintf(w, "\nCPU profiles (%s), in %s:\n", rep.ProfileNote, rep.ProfileDir)
	for _, p := range rep.Paths {
		for _, name := range []string{"gateway", "client"} {
			if f, ok := p.Profiles[name]; ok {
				fmt.Fprintf(w, "  %-18s %-8s %s\n", p.Name, name, f)
			}
		}
	}
	fmt.Fprintf(w, "  read with: go tool pprof -top %s %s\n",
		filepath.Join(rep.ProfileDir, "gozone-gateway"), filepath.Join(rep.ProfileDir, "<path>-gateway.pprof"))
}
