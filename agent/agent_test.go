package agent

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/poll"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fixture is a NATS server with the log stream, a connection standing in
// for the coordinator (it takes every report) and, once started, an agent.
type fixture struct {
	t       *testing.T
	url     string
	ns      subject.Namespace
	nc      *nats.Conn
	js      jetstream.JetStream
	reports chan *gv1.Report
	agent   *Agent
	// logs is everything the agent logged.
	logs *observer.ObservedLogs
}

const testCluster = "test"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: limit.Message,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(srv.Shutdown)
	f := &fixture{t: t, url: srv.ClientURL(), ns: subject.New(testCluster), reports: make(chan *gv1.Report, 16)}
	if f.nc, err = nats.Connect(f.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.nc.Close)
	if f.js, err = jetstream.New(f.nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: f.ns.LogStream(), Subjects: []string{f.ns.AllLogs()}, MaxMsgSize: limit.LogMessage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.nc.Subscribe(f.ns.AllReports(), func(m *nats.Msg) {
		var r gv1.Report
		if err := proto.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("malformed report: %v", err)
			return
		}
		data, _ := proto.Marshal(&gv1.ReportReply{Accepted: true})
		_ = m.Respond(data)
		f.reports <- &r
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs an agent (configured further by mutate) until the test ends.
func (f *fixture) start(mutate func(*Config)) *Agent {
	f.t.Helper()
	cfg := DefaultConfig()
	cfg.Name = "a1"
	cfg.Cluster = testCluster
	cfg.NATS = f.url
	cfg.WorkDir = f.t.TempDir()
	cfg.HeartbeatInterval = 50 * time.Millisecond
	cfg.Grace = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	obs, logs := observer.New(zapcore.DebugLevel)
	f.logs = logs
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(f.t).Core(), obs))
	a, err := New(cfg, log)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			a.Kill()
			<-done
		}
	})
	f.agent = a
	f.waitFor("agent subscribed", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.nc != nil && a.nc.IsConnected()
	})
	// The subscriptions are made right after connecting; a request that
	// finds no responder is retried by assign.
	return a
}

// assign sends an assignment and returns the agent's answer.
func (f *fixture) assign(as *gv1.Assignment) *gv1.AssignmentReply {
	f.t.Helper()
	data, err := proto.Marshal(as)
	if err != nil {
		f.t.Fatal(err)
	}
	var reply gv1.AssignmentReply
	f.waitFor("an answer to the assignment", func() bool {
		m, err := f.nc.Request(f.ns.Assign(f.agent.Name()), data, time.Second)
		return err == nil && proto.Unmarshal(m.Data, &reply) == nil
	})
	return &reply
}

// report waits for the report of a task.
func (f *fixture) report(task string) *gv1.Report {
	f.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case r := <-f.reports:
			if r.GetRef().GetTask() == task {
				return r
			}
		case <-timeout:
			f.t.Fatalf("no report of %s", task)
		}
	}
}

// logChunks returns the chunks published for a task, up to its end-of-log
// mark.
func (f *fixture) logChunks(job, task string) []*gv1.LogChunk {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := f.js.OrderedConsumer(ctx, f.ns.LogStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{f.ns.TaskLogs(job, task)}})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*gv1.LogChunk
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			f.t.Fatalf("read log of %s/%s after %d chunks: %v", job, task, len(out), err)
		}
		var c gv1.LogChunk
		if err := proto.Unmarshal(m.Data(), &c); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, &c)
		if c.Eof {
			return out
		}
	}
}

func logText(chunks []*gv1.LogChunk) string {
	var b []byte
	for _, c := range chunks {
		b = append(b, c.Data...)
	}
	return string(b)
}

// waitFor polls cond until it holds, failing the test after a deadline.
func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	if !poll.Until(20*time.Second, cond) {
		f.t.Fatalf("timed out waiting for %s", what)
	}
}

func execTask(job, task string, spec *gv1.ExecSpec) *gv1.Assignment {
	return &gv1.Assignment{
		Ref:     &gv1.TaskRef{JobId: job, Task: task, Attempt: 1},
		JobName: "pipeline",
		Spec:    &gv1.TaskSpec{Name: task, Executor: &gv1.TaskSpec_Exec{Exec: spec}},
	}
}
