// Package relay forwards TCP connections from a loopback port of its own
// to a target that may be known only later, and can cut them. Test
// harnesses use it to partition Raft traffic, and to give the first NATS
// server of a cluster a route before any other server's address is known:
// the embedded NATS server refuses to start clustered JetStream without a
// configured route, and servers bind port 0.
package relay

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Relay accepts connections on its own address and forwards each one to
// the target's address at the time it arrives. While the target is unknown
// ("") or the relay is cut, connections are closed at once.
type Relay struct {
	l      net.Listener
	target func() string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

// New starts a relay on a loopback port chosen by the kernel.
func New(target func() string) (*Relay, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay listen: %w", err)
	}
	r := &Relay{l: l, target: target, conns: map[net.Conn]bool{}}
	go r.serve()
	return r, nil
}

// Addr is the address that connections are relayed from.
func (r *Relay) Addr() string { return r.l.Addr().String() }

// Close stops accepting and drops every connection.
func (r *Relay) Close() {
	r.l.Close()
	r.SetCut(true)
}

func (r *Relay) serve() {
	for {
		in, err := r.l.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		target := ""
		if !r.cut {
			target = r.target()
		}
		if target == "" {
			r.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			r.mu.Unlock()
			in.Close()
			continue
		}
		r.conns[in], r.conns[out] = true, true
		r.mu.Unlock()
		go r.pipe(in, out)
		go r.pipe(out, in)
	}
}

func (r *Relay) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	r.mu.Lock()
	delete(r.conns, dst)
	delete(r.conns, src)
	r.mu.Unlock()
}

// SetCut drops every connection and refuses new ones, or lets them through
// again.
func (r *Relay) SetCut(cut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = cut
	if cut {
		for c := range r.conns {
			c.Close()
		}
	}
}
