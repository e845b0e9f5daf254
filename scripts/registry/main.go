// Command registry serves an OCI registry (go-containerregistry's
// pkg/registry, in memory) for tests and development. It prints the address
// it listens on as its first line of output and serves until SIGTERM.
//
//	go run ./scripts/registry --addr 127.0.0.1:0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	addrFile := flag.String("addr-file", "", "write the listening address to this file once serving")
	quiet := flag.Bool("quiet", true, "do not log every request")
	flag.Parse()
	if err := run(*addr, *addrFile, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run(addr, addrFile string, quiet bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	var opts []registry.Option
	if quiet {
		opts = append(opts, registry.Logger(log.New(io.Discard, "", 0)))
	}
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	fmt.Println(ln.Addr().String())
	if addrFile != "" {
		tmp := addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write address: %w", err)
		}
		if err := os.Rename(tmp, addrFile); err != nil {
			return fmt.Errorf("write address: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
