package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// localCluster is a cluster of coordinator processes started by bench.
type localCluster struct {
	dir   string
	keep  bool
	nodes []*localNode
}

type localNode struct {
	id, grpc, http, nats, route, raft string
	cmd                               *exec.Cmd
	done                              chan struct{} // closed when cmd has exited
}

// exited reports whether the node's process has ended.
func (nd *localNode) exited() bool {
	select {
	case <-nd.done:
		return true
	default:
		return false
	}
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago and was not handed out before. The port is drawn below the
// kernel's ephemeral range (32768 and up on Linux), where ":0" listeners
// and every outgoing connection take theirs: a port found free there can be
// taken by another connection before the coordinator binds it.
func freeLoopbackAddr() string {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + mrand.IntN(12000)
		if ports[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports[p] = true
		return l.Addr().String()
	}
	panic("no free loopback port between 20000 and 32000")
}

func startLocalCluster(ctx context.Context, n int, keep bool) (*localCluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-")
	if err != nil {
		return nil, err
	}
	lc := &localCluster{dir: dir, keep: keep}
	var peers, routes []string
	for i := 0; i < n; i++ {
		nd := &localNode{
			id: fmt.Sprintf("n%d", i+1), grpc: freeLoopbackAddr(), http: freeLoopbackAddr(),
			nats: freeLoopbackAddr(), route: freeLoopbackAddr(), raft: freeLoopbackAddr(),
		}
		lc.nodes = append(lc.nodes, nd)
		peers = append(peers, nd.id+"="+nd.raft)
		routes = append(routes, "nats://"+nd.route)
	}
	for _, nd := range lc.nodes {
		args := []string{"coordinator", "--node-id", nd.id, "--cluster", "bench",
			"--data-dir", filepath.Join(dir, nd.id), "--bootstrap", "--peers", strings.Join(peers, ","),
			"--raft-addr", nd.raft, "--grpc-addr", nd.grpc, "--http-addr", nd.http,
			"--nats-listen", nd.nats, "--log-level", "warn", "--log-format", "json"}
		if n > 1 {
			args = append(args, "--nats-cluster-listen", nd.route, "--nats-routes", strings.Join(routes, ","))
		}
		nd.cmd = exec.Command(self, args...)
		logf, err := os.Create(filepath.Join(dir, nd.id+".log"))
		if err != nil {
			lc.stop()
			return nil, err
		}
		nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
		if err := nd.cmd.Start(); err != nil {
			lc.stop()
			return nil, fmt.Errorf("start %s: %w", nd.id, err)
		}
		nd.done = make(chan struct{})
		go func(c *exec.Cmd, done chan struct{}) {
			_ = c.Wait()
			close(done)
		}(nd.cmd, nd.done)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, nd := range lc.nodes {
		for {
			resp, err := http.Get("http://" + nd.http + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if nd.exited() {
				lc.keep = true
				lc.stop()
				return nil, fmt.Errorf("coordinator %s exited while starting (logs in %s)", nd.id, dir)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				lc.keep = true
				lc.stop()
				return nil, fmt.Errorf("coordinator %s not ready (logs in %s)", nd.id, dir)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return lc, nil
}

func (lc *localCluster) natsURLs() string {
	var urls []string
	for _, nd := range lc.nodes {
		urls = append(urls, "nats://"+nd.nats)
	}
	return strings.Join(urls, ",")
}

// kill sends SIGKILL to node i.
func (lc *localCluster) kill(i int) {
	if c := lc.nodes[i].cmd; c != nil && c.Process != nil {
		_ = c.Process.Signal(syscall.SIGKILL)
		<-lc.nodes[i].done
		lc.nodes[i].cmd = nil
	}
}

func (lc *localCluster) stop() {
	for _, nd := range lc.nodes {
		if nd.cmd != nil && nd.cmd.Process != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, nd := range lc.nodes {
		if nd.cmd != nil && nd.cmd.Process != nil {
			select {
			case <-nd.done:
			case <-time.After(10 * time.Second):
				_ = nd.cmd.Process.Kill()
				<-nd.done
			}
		}
	}
	if !lc.keep {
		os.RemoveAll(lc.dir)
	}
}
