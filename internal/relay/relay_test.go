package relay_test

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gantryci/gantry/internal/relay"
)

// echo serves a line echo on a port of its own.
func echo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// roundTrip sends a line through the relay and reports whether it came back.
func roundTrip(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

func TestRelayForwardsOnceTheTargetIsKnownAndCuts(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	target := ""
	r, err := relay.New(func() string {
		mu.Lock()
		defer mu.Unlock()
		return target
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if roundTrip(r.Addr()) {
		t.Fatal("relayed before the target was known")
	}
	mu.Lock()
	target = echo(t)
	mu.Unlock()
	if !roundTrip(r.Addr()) {
		t.Fatal("no round trip once the target is known")
	}
	r.SetCut(true)
	if roundTrip(r.Addr()) {
		t.Fatal("relayed while cut")
	}
	r.SetCut(false)
	if !roundTrip(r.Addr()) {
		t.Fatal("no round trip after healing")
	}
}
