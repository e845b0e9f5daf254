package cluster

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// linkProxy forwards one direction of Raft traffic (node i dialing node j)
// and can cut it, to partition the network between coordinators.
type linkProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { l.Close(); p.setCut(true) })
	return p
}

func (p *linkProxy) addr() string { return p.l.Addr().String() }

func (p *linkProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *linkProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// setCut drops every connection and refuses new ones, or lets them through again.
func (p *linkProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// network routes every node's Raft dials through a proxy per link.
type network struct {
	links map[[2]int]*linkProxy // [from, to]
}

// partitionable makes the cluster's Raft traffic go through proxies. It
// must be applied to the configs before the nodes start.
func (c *testCluster) partitionable() {
	n := len(c.cfgs)
	c.net = &network{links: map[[2]int]*linkProxy{}}
	ids := map[raft.ServerID]int{}
	for j := range c.cfgs {
		ids[raft.ServerID(c.cfgs[j].NodeID)] = j
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i != j {
				c.net.links[[2]int{i, j}] = newLinkProxy(c.t, c.cfgs[j].Raft.BindAddr)
			}
		}
		from := i
		c.cfgs[i].Raft.AddressProvider = addressFunc(func(id raft.ServerID) (raft.ServerAddress, error) {
			to, ok := ids[id]
			if !ok || to == from {
				return "", errUnknownPeer
			}
			return raft.ServerAddress(c.net.links[[2]int{from, to}].addr()), nil
		})
	}
}

// isolate cuts (or heals) every Raft link to and from node k.
func (c *testCluster) isolate(k int, cut bool) {
	for link, p := range c.net.links {
		if link[0] == k || link[1] == k {
			p.setCut(cut)
		}
	}
}

type addressFunc func(raft.ServerID) (raft.ServerAddress, error)

func (f addressFunc) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) { return f(id) }

type peerError string

func (e peerError) Error() string { return string(e) }

const errUnknownPeer = peerError("unknown peer")
