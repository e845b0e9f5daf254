// Package sim runs many lightweight agents in one process. They speak the
// real agent protocol over NATS (heartbeats, assignments, reports) but
// execute nothing: a task finishes the moment it is accepted, or is held
// until the agent is killed. gantry bench uses them to load a cluster with
// thousands of agents and to measure dispatch without process start-up.
// They encode and decode with the generated fast methods (MarshalVT): they
// share the machine with the cluster they load, and what they spend is not
// the cluster's.
package sim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/capability"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Config configures a fleet of simulated agents.
type Config struct {
	Cluster string
	// NATS is a comma-separated list of server URLs.
	NATS      string
	Prefix    string // agents are named Prefix-0, Prefix-1, ...
	Count     int
	Slots     int
	Labels    map[string]string
	Heartbeat time.Duration
	// Hold keeps accepted tasks running (never reported) instead of
	// finishing them at once.
	Hold bool
	// PerConn is how many agents share one NATS connection.
	PerConn int
	// TLS, when set, secures the NATS connections. Agents share them, so
	// on a cluster with TLS the certificate must be a coordinator's (an
	// agent certificate allows one agent's subjects only).
	TLS *tls.Config
	// Requests makes the agents speak the protocol from before quiet
	// assignments (capability.QuietAssignments): they announce no revision
	// and expect every assignment as a request; one published to them is
	// counted in Unasked and dropped.
	Requests bool
	// OnStart is called when an agent accepts an attempt, OnFinish when the
	// leader acknowledged its result. Both may be nil.
	OnStart  func(agent string, as *gv1.Assignment, at time.Time)
	OnFinish func(agent string, ref *gv1.TaskRef, at time.Time)
}

// Fleet is a running set of simulated agents.
type Fleet struct {
	cfg    Config
	ns     subject.Namespace
	conns  []*nats.Conn
	agents []*simAgent
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Unasked counts assignments published to agents of Config.Requests.
	Unasked atomic.Int64
	// Accepted and Finished count attempts.
	Accepted atomic.Int64
	Finished atomic.Int64
}

type simAgent struct {
	name    string
	session string
	nc      *nats.Conn
	subs    []*nats.Subscription
	dead    atomic.Bool

	mu sync.Mutex
	// running hold slots; reporting ended and wait for the leader's
	// answer to their report. As a real agent's, a slot is free once its
	// task ended (its result kept until answered), and the heartbeat
	// lists both.
	running   map[string]*gv1.TaskRef
	reporting map[string]*gv1.TaskRef
}

// Start connects the fleet and starts its heartbeats.
func Start(cfg Config) (*Fleet, error) {
	if cfg.Count <= 0 || cfg.Slots <= 0 {
		return nil, fmt.Errorf("sim: count and slots must be positive")
	}
	if cfg.PerConn <= 0 {
		cfg.PerConn = 256
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sim"
	}
	f := &Fleet{cfg: cfg, ns: subject.New(cfg.Cluster)}
	for i := 0; i < cfg.Count; i++ {
		if i%cfg.PerConn == 0 {
			opts := []nats.Option{nats.Name("gantry-sim"), nats.MaxReconnects(-1),
				nats.ReconnectWait(100 * time.Millisecond), nats.ReconnectBufSize(32 << 20)}
			if cfg.TLS != nil {
				opts = append(opts, nats.Secure(cfg.TLS))
			}
			nc, err := nats.Connect(cfg.NATS, opts...)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("sim: connect %s: %w", cfg.NATS, err)
			}
			f.conns = append(f.conns, nc)
		}
		var b [6]byte
		_, _ = rand.Read(b[:])
		a := &simAgent{
			name:    fmt.Sprintf("%s-%d", cfg.Prefix, i),
			session: hex.EncodeToString(b[:]),
			nc:      f.conns[len(f.conns)-1],
			running: map[string]*gv1.TaskRef{}, reporting: map[string]*gv1.TaskRef{},
		}
		sub, err := a.nc.Subscribe(f.ns.Assign(a.name), func(m *nats.Msg) { f.assign(a, m) })
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sim: subscribe: %w", err)
		}
		a.subs = append(a.subs, sub)
		f.agents = append(f.agents, a)
	}
	for _, nc := range f.conns {
		if err := nc.Flush(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sim: flush: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.heartbeats(ctx)
	}()
	return f, nil
}

// Names lists the agents' names.
func (f *Fleet) Names() []string {
	out := make([]string, len(f.agents))
	for i, a := range f.agents {
		out[i] = a.name
	}
	return out
}

// Kill makes agent i vanish as a crash would: no heartbeats, no answers,
// its held tasks abandoned.
func (f *Fleet) Kill(i int) {
	a := f.agents[i]
	a.dead.Store(true)
	for _, s := range a.subs {
		s.Unsubscribe()
	}
}

// Holding returns the attempts agent i holds.
func (f *Fleet) Holding(i int) []*gv1.TaskRef {
	a := f.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*gv1.TaskRef, 0, len(a.running))
	for _, r := range a.running {
		out = append(out, r)
	}
	return out
}

// Close disconnects every agent.
func (f *Fleet) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for _, nc := range f.conns {
		nc.Close()
	}
}

func refKey(r *gv1.TaskRef) string {
	return r.GetJobId() + "/" + r.GetTask() + "/" + strconv.Itoa(int(r.GetAttempt()))
}

func (f *Fleet) assign(a *simAgent, m *nats.Msg) {
	if a.dead.Load() {
		return
	}
	if f.cfg.Requests && m.Reply == "" {
		f.Unasked.Add(1)
		return
	}
	var as gv1.Assignment
	accepted := as.UnmarshalVT(m.Data) == nil && as.GetRef().GetAttempt() > 0
	a.mu.Lock()
	if accepted && len(a.running) >= f.cfg.Slots {
		accepted = false
	}
	if accepted {
		a.running[refKey(as.Ref)] = as.Ref
	}
	a.mu.Unlock()
	switch {
	case m.Reply != "":
		reply := &gv1.AssignmentReply{Accepted: accepted}
		if !accepted {
			reply.Reason = "no free slot"
		}
		data, _ := reply.MarshalVT()
		_ = m.Respond(data)
	case !accepted && as.GetRef() != nil:
		// A published assignment is refused by a report.
		data, _ := (&gv1.Report{Ref: as.Ref, Agent: a.name, Refused: true, Failure: gv1.FailureClass_FAILURE_CLASS_INFRA, Error: "no free slot"}).MarshalVT()
		_ = a.nc.Publish(f.ns.Report(a.name), data)
	}
	if !accepted {
		return
	}
	now := time.Now()
	f.Accepted.Add(1)
	if f.cfg.OnStart != nil {
		f.cfg.OnStart(a.name, &as, now)
	}
	if f.cfg.Hold {
		return
	}
	go f.report(a, as.Ref, now)
}

// report delivers a success until the leader answers.
func (f *Fleet) report(a *simAgent, ref *gv1.TaskRef, started time.Time) {
	data, _ := (&gv1.Report{
		Ref: ref, Success: true, Agent: a.name,
		StartedAt: timestamppb.New(started), FinishedAt: timestamppb.Now(),
	}).MarshalVT()
	k := refKey(ref)
	a.mu.Lock()
	delete(a.running, k)
	a.reporting[k] = ref
	a.mu.Unlock()
	wait := 20 * time.Millisecond
	for !a.dead.Load() {
		msg, err := a.nc.Request(f.ns.Report(a.name), data, 5*time.Second)
		if err == nil {
			var reply gv1.ReportReply
			if reply.UnmarshalVT(msg.Data) == nil {
				a.mu.Lock()
				delete(a.reporting, k)
				a.mu.Unlock()
				f.Finished.Add(1)
				if f.cfg.OnFinish != nil {
					f.cfg.OnFinish(a.name, ref, time.Now())
				}
				return
			}
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

func (f *Fleet) heartbeats(ctx context.Context) {
	// Spread the fleet's heartbeats over the interval.
	step := f.cfg.Heartbeat / time.Duration(max(len(f.agents), 1))
	if step < 50*time.Microsecond {
		step = 0
	}
	for {
		start := time.Now()
		for i, a := range f.agents {
			if ctx.Err() != nil {
				return
			}
			if a.dead.Load() {
				continue
			}
			f.beat(a)
			// Sleep until the next agent's turn, not a step after this
			// one: sleeps of 100 µs oversleep, and 10,000 of them would
			// stretch the interval tenfold.
			if wait := time.Until(start.Add(time.Duration(i+1) * step)); step > 0 && wait > time.Millisecond {
				time.Sleep(wait)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(f.cfg.Heartbeat-time.Since(start), 0)):
		}
	}
}

func (f *Fleet) beat(a *simAgent) {
	hb := &gv1.Heartbeat{
		Agent: &gv1.AgentInfo{
			Name: a.name, Labels: f.cfg.Labels, Slots: int32(f.cfg.Slots),
			Capabilities: []string{capability.Exec}, Version: "sim", Session: a.session, Protocol: capability.Protocol,
		},
		SentAt: timestamppb.Now(),
	}
	if f.cfg.Requests {
		hb.Agent.Protocol = 0
	}
	a.mu.Lock()
	for _, r := range a.running {
		hb.Running = append(hb.Running, r)
	}
	for _, r := range a.reporting {
		hb.Running = append(hb.Running, r)
	}
	a.mu.Unlock()
	data, _ := hb.MarshalVT()
	_ = a.nc.Publish(f.ns.Heartbeat(a.name), data)
}

// ParseLabels reads k=v,k=v.
func ParseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}
