// Command embed shows connlib inside another Go program: a client session
// on a userspace network stack (no root, no TUN, no change to the host's
// routes or DNS) and an HTTP client whose connections go through it.
//
//	FIREZONE_API_URL=ws://127.0.0.1:8080 FIREZONE_TOKEN=... go run ./examples/embed http://web.internal/
//
// (go run ./examples/quickstart -keep prints a portal URL and a token to try it with.)
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gozone/gozone/connlib"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, out io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: embed URL (portal from FIREZONE_API_URL, FIREZONE_TOKEN)")
	}
	id := getenv("FIREZONE_ID")
	if id == "" {
		id = "embed-example"
	}
	uc, err := connlib.NewUserspaceClient(connlib.ClientConfig{
		APIURL: getenv("FIREZONE_API_URL"), Token: getenv("FIREZONE_TOKEN"), FirezoneID: id,
	})
	if err != nil {
		return err
	}
	uc.Start()
	defer uc.Close() // stops the session and every connection through it

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: uc.Transport()}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fmt.Fprintln(out, resp.Status)
	_, err = io.Copy(out, resp.Body)
	return err
}
