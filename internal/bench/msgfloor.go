package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// msgFloor measures the NATS traffic of the throughput scenario with
// nothing of Gantry running: three embedded servers routed by mutual TLS,
// agents of the fleet on TLS connections of 256 agents each (as the
// simulated agents connect), and a leader connected in process to the
// first server (as a coordinator is to its own). A task is the three
// messages a no-op task costs there, of their sizes: the assignment
// published to its agent, the agent's report sent as a request, the
// leader's answer. The leader keeps 4,000 tasks in flight (the scenario's
// bound on its backlog) for d. It reports the tasks whose answer reached
// their agent per second and the CPU each took (this process's, user and
// system): what the messages alone cost, which bounds the no-op
// throughput on this machine before Raft, the API or scheduling do
// anything.
func msgFloor(ctx context.Context, agents int, d time.Duration, res *Result) error {
	dir, err := os.MkdirTemp("", "gantry-msgfloor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	names := []string{"m0", "m1", "m2"}
	l, err := pki.EnsureLocal(filepath.Join(dir, "tls"), names...)
	if err != nil {
		return err
	}
	servers := make([]*natsserver.Server, len(names))
	for i, n := range names {
		cert, key := l.CertFiles(n)
		clients, err := pki.ServerTLS(cert, key, l.CAFile())
		if err != nil {
			return err
		}
		clients.ClientAuth = tls.RequireAndVerifyClientCert
		routes, err := pki.PeerTLS(cert, key, l.CAFile())
		if err != nil {
			return err
		}
		opts := &natsserver.Options{
			ServerName: n, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			TLS: true, TLSVerify: true, TLSConfig: clients, TLSTimeout: 5,
			Cluster: natsserver.ClusterOpts{Name: "msgfloor", Host: "127.0.0.1", Port: -1, TLSConfig: routes, TLSTimeout: 5},
		}
		if i > 0 {
			opts.Routes = natsserver.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d", servers[0].ClusterAddr().Port))
		}
		s, err := startNATS(opts)
		if err != nil {
			return err
		}
		defer s.Shutdown()
		servers[i] = s
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range servers {
		for s.NumRoutes() < len(servers)-1 {
			if time.Now().After(deadline) {
				return errors.New("msgfloor: servers not routed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := l.EnsureServer("msgfloor-agents"); err != nil {
		return err
	}
	cert, key := l.CertFiles("msgfloor-agents")
	agentTLS, err := pki.ClientTLS(l.CAFile(), cert, key)
	if err != nil {
		return err
	}

	ns := subject.New("msgfloor")
	leader, err := nats.Connect("", nats.InProcessServer(servers[0]))
	if err != nil {
		return err
	}
	defer leader.Close()
	answer, _ := (&gv1.ReportReply{}).MarshalVT()
	if _, err := leader.Subscribe(ns.AllReports(), func(m *nats.Msg) {
		var r gv1.Report
		if r.UnmarshalVT(m.Data) == nil {
			_ = m.Respond(answer)
		}
	}); err != nil {
		return err
	}
	_ = leader.Flush()

	var finished atomic.Int64
	free := make(chan struct{}, 4000)
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < agents; i++ {
		if i%256 == 0 {
			// Spread over the servers, followers first.
			s := servers[(len(conns)+1)%len(servers)]
			c, err := nats.Connect(s.ClientURL(), nats.Secure(agentTLS))
			if err != nil {
				return fmt.Errorf("msgfloor: connect: %w", err)
			}
			conns = append(conns, c)
		}
		c, name := conns[len(conns)-1], fmt.Sprintf("msgfloor-%d", i)
		if _, err := c.Subscribe(ns.Assign(name), func(m *nats.Msg) {
			var as gv1.Assignment
			if as.UnmarshalVT(m.Data) != nil {
				return
			}
			go func() {
				now := timestamppb.Now()
				data, _ := (&gv1.Report{Ref: as.Ref, Success: true, Agent: name, StartedAt: now, FinishedAt: now}).MarshalVT()
				if msg, err := c.Request(ns.Report(name), data, 5*time.Second); err == nil {
					var reply gv1.ReportReply
					if reply.UnmarshalVT(msg.Data) == nil {
						finished.Add(1)
					}
				}
				free <- struct{}{}
			}()
		}); err != nil {
			return err
		}
	}
	for _, c := range conns {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	for range cap(free) {
		free <- struct{}{}
	}
	spec := noopTask("t0", map[string]string{"bench": "fleet"})
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cpu0, began := cpuTime(syscall.RUSAGE_SELF), time.Now()
	for n := 0; ctx.Err() == nil; n++ {
		select {
		case <-ctx.Done():
		case <-free:
			name := fmt.Sprintf("msgfloor-%d", n%agents)
			ref := &gv1.TaskRef{JobId: fmt.Sprintf("j%016d", n/20), Task: fmt.Sprintf("t%d", n%20), Attempt: 1}
			data, _ := (&gv1.Assignment{Ref: ref, JobName: "throughput", Spec: spec, Fence: uint64(n)}).MarshalVT()
			if err := leader.Publish(ns.Assign(name), data); err != nil {
				return err
			}
		}
	}
	took, used, n := time.Since(began), cpuTime(syscall.RUSAGE_SELF)-cpu0, finished.Load()
	if n == 0 {
		return errors.New("msgfloor: no task's answer arrived")
	}
	rate, per := float64(n)/took.Seconds(), float64(used)/float64(n)/1e3
	res.FloorMsgTasksPerS, res.FloorMsgCPUUs = &rate, &per
	return nil
}
