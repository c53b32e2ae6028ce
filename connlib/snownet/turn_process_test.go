package snownet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// The relayed benchmarks can run pion/turn's server in a child process (this
// test binary re-executed), so that the CPU time and garbage of the relay
// are not counted as ours: the CPU per packet a benchmark reports is then
// the two Nodes' alone, comparable with the direct path.

const turnProcessEnv = "SNOWNET_TURN_SERVER_PROCESS"

// TestTURNServerProcess is the child's body when turnProcessEnv is set: it
// serves until its stdin closes. Otherwise it checks that such a child
// starts and answers a STUN Binding from the parent.
func TestTURNServerProcess(t *testing.T) {
	if os.Getenv(turnProcessEnv) != "" {
		ap := startTURN(t)
		fmt.Printf("addr %s\n", ap)
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	ap := startTURNProcess(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	buf := make([]byte, 1500)
	for try := 0; try < 10; try++ {
		if _, err := c.WriteToUDPAddrPort(req.Raw, ap); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		res := &stun.Message{Raw: buf[:n]}
		if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
			t.Fatalf("answer %v %v", res.Type, err)
		}
		return
	}
	t.Fatal("the TURN server child never answered")
}

// startTURNProcess runs startTURN's server in a child process and returns
// its address; the child ends at cleanup.
func startTURNProcess(t testing.TB) netip.AddrPort {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTURNServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), turnProcessEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	case <-time.After(30 * time.Second):
		t.Fatal("TURN server child did not start")
	}
	return netip.AddrPort{}
}
