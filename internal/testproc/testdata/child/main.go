// Command child is the process testproc's own tests run. Its arguments are
// steps, done in order:
//
//	print:TEXT   write TEXT and a newline to stdout
//	half:TEXT    write TEXT without a newline, pause, then the newline
//	stderr:TEXT  write TEXT and a newline to stderr
//	exit:N       exit with status N
//	wait         log "waiting", then wait for signals: SIGUSR1 logs
//	             "usr1", SIGTERM logs "term" and exits 0
//	ignore       like wait, but SIGTERM is logged and ignored
//	cat:FILE     print the file's content
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	for _, step := range os.Args[1:] {
		verb, arg, _ := strings.Cut(step, ":")
		switch verb {
		case "print":
			fmt.Println(arg)
		case "half":
			fmt.Print(arg)
			time.Sleep(300 * time.Millisecond)
			fmt.Println()
		case "stderr":
			fmt.Fprintln(os.Stderr, arg)
		case "exit":
			n, _ := strconv.Atoi(arg)
			os.Exit(n)
		case "cat":
			b, err := os.ReadFile(arg)
			if err != nil {
				fmt.Println(err)
				os.Exit(2)
			}
			os.Stdout.Write(b)
		case "wait", "ignore":
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
			fmt.Println("waiting")
			for s := range sigs {
				if s == syscall.SIGUSR1 {
					fmt.Println("usr1")
					continue
				}
				fmt.Println("term")
				if verb == "wait" {
					os.Exit(0)
				}
			}
		default:
			fmt.Fprintln(os.Stderr, "child: unknown step", step)
			os.Exit(2)
		}
	}
}
