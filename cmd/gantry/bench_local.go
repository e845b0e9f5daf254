package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
}

func freeLoopbackAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer l.Close()
	return l.Addr().String()
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
			if time.Now().After(deadline) || ctx.Err() != nil {
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
		_, _ = c.Process.Wait()
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
			done := make(chan struct{})
			go func() { _, _ = nd.cmd.Process.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = nd.cmd.Process.Kill()
			}
		}
	}
	if !lc.keep {
		os.RemoveAll(lc.dir)
	}
}
