package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// reportSlots bounds the reports being committed at once. A report past it
// gets no answer, and its agent sends it again.
const reportSlots = 256

// handleReport commits an agent's report and answers it. A report that
// cannot be committed now (no leader, a timeout) gets no answer, and the
// agent sends it again.
func (d *Dispatcher) handleReport(ctx context.Context, m *nats.Msg) {
	reply, outcome := d.report(ctx, m.Subject, m.Data)
	if reply == nil {
		return
	}
	d.metrics.Reports.WithLabelValues(outcome).Inc()
	if m.Reply == "" {
		return // a refusal, published: nobody waits for an answer
	}
	data, _ := proto.Marshal(reply)
	if err := m.Respond(data); err != nil {
		d.log.Debug("answer report", zap.Error(err))
	}
}

// report checks a report received on subj and commits it. It returns the
// answer and its outcome (a metric label), or nil when the outcome is not
// known yet. A refused report is final for the agent and changes nothing.
func (d *Dispatcher) report(ctx context.Context, subj string, data []byte) (*gv1.ReportReply, string) {
	// The agent is named by the subject it was allowed to publish on.
	agent, ok := d.ns.ReportAgent(subj)
	if !ok || name.Token(agent) != nil {
		return refuse("malformed", "report on a subject that names no agent: %s", limit.Clip(subj, 256))
	}
	if len(data) > limit.Message {
		return refuse("malformed", "report: %d bytes, more than the limit of %d", len(data), limit.Message)
	}
	var r gv1.Report
	if err := proto.Unmarshal(data, &r); err != nil {
		return refuse("malformed", "malformed report: %v", err)
	}
	if err := checkReport(&r); err != nil {
		return refuse("refused", "%v", err)
	}
	if r.Agent != "" && r.Agent != agent {
		return refuse("refused", "report.agent: %q, but the report came from agent %s", r.Agent, agent)
	}
	r.Agent = agent
	r.Error = limit.Clip(r.Error, limit.ReportError)
	// The attempt's lease holder alone ends it. (The state machine checks
	// it too; checking first keeps forged reports out of the log.)
	if d.fsm.IsCurrent(r.Ref) {
		if holder := d.holder(r.Ref); holder != agent {
			return notHeld(r.Ref, agent)
		}
	}
	if r.Refused {
		return d.refusal(ctx, agent, &r)
	}
	res, err := d.prop.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_FinishTask{FinishTask: &gv1.FinishTaskCommand{Report: &r}}})
	switch {
	case err == nil:
		d.credit(agent, res.Index)
		return &gv1.ReportReply{Accepted: true}, "accepted"
	case errors.Is(err, fsm.ErrDuplicate):
		return &gv1.ReportReply{Accepted: true, Reason: "already recorded"}, "duplicate"
	case errors.Is(err, fsm.ErrStaleAttempt), errors.Is(err, fsm.ErrNotFound), errors.Is(err, fsm.ErrInvalid):
		d.log.Info("report refused", zap.String("agent", agent), zap.String("job", r.Ref.JobId),
			zap.String("task", r.Ref.Task), zap.Int32("attempt", r.Ref.Attempt), zap.Error(err))
		return refuse("refused", "%v", err)
	default:
		if ctx.Err() == nil {
			d.log.Warn("commit report", zap.String("agent", agent), zap.Error(err))
		}
		return nil, ""
	}
}

// refusal requeues an attempt whose agent did not take its published
// assignment (deliverQuiet). The assignment may have been sent before it
// committed: a refusal that arrives first waits for the commit, a bounded
// while. Only the attempt's holder refuses it, and only while it is
// current.
func (d *Dispatcher) refusal(ctx context.Context, agent string, r *gv1.Report) (*gv1.ReportReply, string) {
	if d.inFlight(r.Ref) {
		deadline := time.NewTimer(d.cfg.AssignTimeout)
		defer deadline.Stop()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for d.inFlight(r.Ref) {
			select {
			case <-tick.C:
			case <-deadline.C:
				return nil, ""
			case <-ctx.Done():
				return nil, ""
			}
		}
	}
	if holder, held := d.fsm.Holder(r.Ref); !held || holder != agent || !d.fsm.IsCurrent(r.Ref) {
		return notHeld(r.Ref, agent)
	}
	d.requeue(ctx, r.Ref, fmt.Sprintf("agent %s did not take the task: %s", agent, r.Error), "not_accepted")
	return &gv1.ReportReply{Accepted: true}, "not_accepted"
}

// refuse is the answer to a report that changes nothing, and its outcome.
func refuse(outcome, format string, args ...any) (*gv1.ReportReply, string) {
	return &gv1.ReportReply{Reason: limit.Clip(fmt.Sprintf(format, args...), limit.ReportError)}, outcome
}

func notHeld(ref *gv1.TaskRef, agent string) (*gv1.ReportReply, string) {
	return refuse("refused", "report.ref: attempt %d of %s/%s is not held by agent %s", ref.Attempt, ref.JobId, ref.Task, agent)
}

// holder returns the agent holding the current attempt of ref's task.
func (d *Dispatcher) holder(ref *gv1.TaskRef) string {
	agent, _ := d.fsm.Holder(ref)
	return agent
}

// checkReport checks a report against the grammar of names and the bounds
// of package limit; the error names the field and the bound. The error
// string is not checked: it is cut to limit.ReportError.
func checkReport(r *gv1.Report) error {
	if r.GetRef() == nil {
		return errors.New("report.ref: required")
	}
	if err := checkRef(r.GetRef()); err != nil {
		return fmt.Errorf("report.ref.%w", err)
	}
	if r.GetAgent() != "" {
		if err := name.Token(r.GetAgent()); err != nil {
			return fmt.Errorf("report.agent: %w", err)
		}
	}
	if n := len(r.GetOutputs()); n > limit.ReportOutputs {
		return fmt.Errorf("report.outputs: %d outputs, more than the limit of %d", n, limit.ReportOutputs)
	}
	keys := make([]string, 0, len(r.GetOutputs()))
	for k := range r.GetOutputs() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := name.Token(k); err != nil {
			return fmt.Errorf("report.outputs: key: %w", err)
		}
		if v := r.GetOutputs()[k]; len(v) > limit.OutputValue {
			return fmt.Errorf("report.outputs[%q]: value is %d bytes, longer than the limit of %d", k, len(v), limit.OutputValue)
		}
	}
	return nil
}
