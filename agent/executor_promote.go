package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gantryci/gantry/agent/promote"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// promoteExecutor runs promote tasks: it commits a new image reference to
// a configuration repository, which the GitOps controller then deploys.
// Every agent has it; it needs no capability beyond reaching the
// repository, like an exec task's checkout.
type promoteExecutor struct {
	// root is the parent of per-attempt working directories.
	root string
}

func (promoteExecutor) capabilities() []string { return nil }

func (promoteExecutor) accepts(spec *gv1.TaskSpec) bool { return spec.GetPromote() != nil }

func (e promoteExecutor) run(ctx context.Context, at *attempt) outcome {
	spec := at.as.GetSpec()
	p := spec.GetPromote()
	ctx, cancel := withTimeout(ctx, spec.GetTimeout().AsDuration())
	defer cancel()
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		return infraFailure(fmt.Errorf("promote work directory: %w", err))
	}
	var cred []byte
	if name := p.GetRepo().GetSecret(); name != "" {
		v, ok := at.as.GetSecrets()[name]
		if !ok {
			return outcome{exitCode: -1, class: gv1.FailureClass_FAILURE_CLASS_JOB,
				err: fmt.Errorf("promote.repo.secret: secret %q is not in the assignment", name)}
		}
		cred = v
	}
	ref := at.as.GetRef()
	// The spec's message is the subject; the coordinator appended the
	// source commit, the agent adds the job.
	msg := strings.TrimSpace(p.GetMessage())
	if msg == "" || strings.HasPrefix(msg, "Source-Commit:") {
		msg = strings.TrimSpace(fmt.Sprintf("promote %s to %s\n\n%s", p.GetImage().GetName(), p.GetImage().GetRef(), msg))
	}
	if !strings.Contains(msg, "\n\nSource-Commit: ") {
		msg += "\n" // trailers are a paragraph of their own
	}
	msg += fmt.Sprintf("\nImage: %s\nGantry-Job: %s (%s)\nGantry-Task: %s", p.GetImage().GetRef(), ref.GetJobId(), at.as.GetJobName(), ref.GetTask())
	res, err := promote.Run(ctx, e.root, promote.Request{
		URL:        p.GetRepo().GetUrl(),
		Credential: cred,
		Branch:     p.GetBranch(),
		File:       p.GetFile(),
		Image:      p.GetImage().GetName(),
		Ref:        p.GetImage().GetRef(),
		Message:    msg,
	}, func(line string) { at.out.system(line) })
	if err != nil {
		class := gv1.FailureClass_FAILURE_CLASS_INFRA
		if errors.Is(err, promote.ErrNoFile) || errors.Is(err, promote.ErrNoImage) || errors.Is(err, promote.ErrRejected) || ctx.Err() != nil {
			class = gv1.FailureClass_FAILURE_CLASS_JOB
		}
		at.out.system("promote failed: " + err.Error())
		return outcome{exitCode: -1, class: class, err: err}
	}
	changed := "false"
	if res.Changed {
		changed = "true"
	}
	return outcome{outputs: map[string]string{
		"commit":  res.Commit,
		"changed": changed,
		"ref":     p.GetImage().GetRef(),
	}}
}
