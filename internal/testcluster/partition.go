package testcluster

import (
	"errors"

	"github.com/hashicorp/raft"

	"github.com/gantryci/gantry/internal/relay"
)

// newRelay starts a relay to target's address, closed when the test ends.
func (c *Cluster) newRelay(target func() string) *relay.Relay {
	c.t.Helper()
	r, err := relay.New(target)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(r.Close)
	return r
}

// network routes every node's Raft dials through a relay per link.
type network struct {
	links map[[2]int]*relay.Relay // [from, to]
}

func (nw *network) cutAll() {
	for _, r := range nw.links {
		r.SetCut(true)
	}
}

var errUnknownPeer = errors.New("unknown peer")

// partitionable makes the cluster's Raft traffic go through relays. It
// must be applied to the configs before the nodes start.
func (c *Cluster) partitionable() {
	n := len(c.cfgs)
	c.net = &network{links: map[[2]int]*relay.Relay{}}
	ids := map[raft.ServerID]int{}
	for j := range c.cfgs {
		ids[raft.ServerID(c.cfgs[j].NodeID)] = j
	}
	for i := range n {
		for j := range n {
			if i != j {
				c.net.links[[2]int{i, j}] = c.newRelay(func() string { return c.raftAddr(j) })
			}
		}
		from := i
		c.cfgs[i].Raft.AddressProvider = addressFunc(func(id raft.ServerID) (raft.ServerAddress, error) {
			to, ok := ids[id]
			if !ok || to == from {
				return "", errUnknownPeer
			}
			return raft.ServerAddress(c.net.links[[2]int{from, to}].Addr()), nil
		})
	}
}

// raftAddr is node j's Raft address, or "" before it first started.
func (c *Cluster) raftAddr(j int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bound(c.cfgs[j].Raft.BindAddr)
}

// Isolate cuts (or heals) every Raft link to and from node k. It needs
// Options.Partitions.
func (c *Cluster) Isolate(k int, cut bool) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("testcluster: Isolate needs Options.Partitions")
	}
	for link, r := range c.net.links {
		if link[0] == k || link[1] == k {
			r.SetCut(cut)
		}
	}
}

type addressFunc func(raft.ServerID) (raft.ServerAddress, error)

func (f addressFunc) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) { return f(id) }
