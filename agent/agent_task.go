package agent

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/agent/mask"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func marshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func nowProto() *timestamppb.Timestamp { return timestamppb.Now() }

// handleAssignment accepts or refuses an assignment. An assignment sent as
// a request is answered either way: the attempt is the agent's only once it
// has answered yes; a lost answer makes the leader requeue it, and the next
// heartbeat's reconciliation stops the orphan. One published without a
// reply subject (capability.QuietAssignments) is taken silently and
// refused by a report; a lost refusal leaves the attempt to its lease.
func (a *Agent) handleAssignment(m *nats.Msg) {
	var as gv1.Assignment
	respond := func(ok bool, reason string) {
		if m.Reply == "" {
			if !ok {
				a.refuse(as.GetRef(), reason)
			}
			return
		}
		data, _ := marshal(&gv1.AssignmentReply{Accepted: ok, Reason: reason})
		if err := m.Respond(data); err != nil {
			a.log.Debug("answer assignment", zap.Error(err))
		}
	}
	if err := proto.Unmarshal(m.Data, &as); err != nil {
		as.Reset() // no attempt to name in a refusal
		respond(false, "malformed assignment: "+err.Error())
		return
	}
	if err := checkAssignment(&as); err != nil {
		respond(false, limit.Clip(err.Error(), limit.ReportError))
		return
	}
	ref := as.GetRef()
	if a.executors.find(as.GetSpec()) == nil {
		respond(false, "no executor for this task on this agent")
		return
	}
	k := keyOf(ref)
	a.mu.Lock()
	switch {
	case a.killed || a.draining:
		a.mu.Unlock()
		respond(false, "draining")
		return
	case a.running[k] != nil || a.spool.has(k):
		a.mu.Unlock()
		respond(true, "") // a repeated delivery of what we already hold
		return
	case len(a.running) >= a.cfg.Slots:
		a.mu.Unlock()
		respond(false, "no free slot")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.running[k] = &task{ref: ref, cancel: cancel}
	a.wg.Add(1)
	a.mu.Unlock()
	respond(true, "")
	go func() {
		defer a.wg.Done()
		defer cancel()
		a.runTask(ctx, &as)
	}()
}

// refuse tells the leader that the agent does not take the published
// assignment of attempt ref.
func (a *Agent) refuse(ref *gv1.TaskRef, reason string) {
	if checkRef(ref) != nil {
		return // nothing the leader could requeue: the lease will
	}
	data, err := marshal(&gv1.Report{
		Ref: ref, Agent: a.cfg.Name, Refused: true, Failure: gv1.FailureClass_FAILURE_CLASS_INFRA,
		Error: limit.Clip(reason, limit.ReportError), FinishedAt: nowProto(),
	})
	if err != nil {
		return
	}
	if err := a.nc.Publish(a.ns.Report(a.cfg.Name), data); err != nil {
		a.log.Debug("refuse assignment", zap.Error(err))
	}
}

func (a *Agent) runTask(ctx context.Context, as *gv1.Assignment) {
	ref := as.GetRef()
	// Everything about the attempt is masked: its log, its report, and
	// what the agent logs of it.
	m := secretMasker(as)
	log := mask.Logger(a.log, m).With(zap.String("job", ref.JobId), zap.String("task", ref.Task), zap.Int32("attempt", ref.Attempt))
	log.Info("task started", zap.Int("secrets", len(as.GetSecrets())))
	sink := newLogSink(a, ref, m)
	started := time.Now()
	res := a.execute(ctx, as, sink, log)
	outputs := boundOutputs(res.outputs, m, sink.system)
	sink.close()
	rep := &gv1.Report{
		Ref:        ref,
		Success:    res.success(),
		ExitCode:   int32(res.exitCode),
		Failure:    res.class,
		Error:      reportError(res.err, m),
		Outputs:    outputs,
		StartedAt:  timestamppb.New(started),
		FinishedAt: timestamppb.Now(),
		Agent:      a.cfg.Name,
	}
	a.mu.Lock()
	if !a.killed {
		if err := a.spool.put(rep); err != nil {
			log.Error("spool result", zap.Error(err))
		}
	}
	delete(a.running, keyOf(ref))
	a.mu.Unlock()
	log.Info("task finished", zap.Bool("success", rep.Success), zap.Int32("exit_code", rep.ExitCode),
		zap.Duration("elapsed", rep.FinishedAt.AsTime().Sub(started)), zap.String("error", rep.Error))
}

// handleControl obeys drain and cancel.
func (a *Agent) handleControl(m *nats.Msg) {
	var c gv1.AgentControl
	if err := proto.Unmarshal(m.Data, &c); err != nil {
		a.log.Warn("malformed control message", zap.Error(err))
		return
	}
	switch x := c.Action.(type) {
	case *gv1.AgentControl_Drain:
		a.Drain()
	case *gv1.AgentControl_Cancel:
		a.mu.Lock()
		t := a.running[keyOf(x.Cancel.GetRef())]
		a.mu.Unlock()
		if t != nil {
			a.log.Info("task canceled", zap.String("job", t.ref.JobId), zap.String("task", t.ref.Task),
				zap.Int32("attempt", t.ref.Attempt), zap.String("reason", x.Cancel.GetReason()))
			t.cancel()
		}
	}
}
