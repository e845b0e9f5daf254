package project

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/spec"
	"github.com/gantryci/gantry/internal/gitsrc"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// startRetry is the wait before trying again to start a build whose
// pipeline could not be fetched (the forge was unreachable).
const startRetry = 5 * time.Second

// startBuilds gives every new build its job: the project's pipeline file
// read at the build's commit. A pipeline that cannot be read because the
// repository does not answer is tried again; one that is missing or
// refused ends the build with the reason (BuildStatus then reports an
// error to the forge).
func (c *Controller) startBuilds(ctx context.Context) {
	now := c.d.Now()
	for _, v := range c.d.FSM.BuildsToStart() {
		id := buildID{v.Project.GetName(), v.Build.GetNumber()}
		if next, ok := c.starting[id]; ok && now.Before(next) {
			continue
		}
		cmd := &gv1.StartBuildCommand{Project: id.project, Number: id.number}
		if v.Build.GetSupersededBy() == 0 {
			job, err := c.job(ctx, v.Project, v.Build)
			var retry *retryable
			switch {
			case errors.As(err, &retry):
				c.log.Warn("read pipeline", zap.String("project", id.project), zap.Uint64("build", id.number), zap.Error(err))
				c.starting[id] = now.Add(startRetry)
				continue
			case err != nil:
				cmd.Error = limit.Clip(err.Error(), limit.ReportError)
			default:
				cmd.Job = job
			}
		}
		res, err := c.propose(ctx, &gv1.Command{At: timestamppb.New(c.d.Now()), Cmd: &gv1.Command_StartBuild{StartBuild: cmd}})
		if err == nil {
			err = res.Err
		}
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("start build", zap.String("project", id.project), zap.Uint64("build", id.number), zap.Error(err))
				c.starting[id] = now.Add(startRetry)
			}
			continue
		}
		delete(c.starting, id)
		c.log.Info("build started", zap.String("project", id.project), zap.Uint64("build", id.number),
			zap.String("job", res.JobID), zap.String("error", cmd.Error))
	}
}

// retryable marks a failure to read a pipeline that may pass (the
// repository did not answer).
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// job reads a build's pipeline at its commit and makes its job.
func (c *Controller) job(ctx context.Context, ps *gv1.ProjectSpec, b *gv1.Build) (*gv1.Job, error) {
	p, ok := c.d.FSM.Project(ps.GetName())
	if !ok {
		return nil, fmt.Errorf("project %q: %w", ps.GetName(), fsm.ErrNotFound)
	}
	tr := b.GetTrigger()
	cred, err := c.credential(p)
	if err != nil {
		return nil, err
	}
	m, err := c.mirror(ps.GetRepo())
	if err != nil {
		return nil, &retryable{err}
	}
	if !m.Has(tr.GetSha()) {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := m.Fetch(fctx, cred, fetchRefs(tr)...)
		cancel()
		if err != nil {
			return nil, &retryable{fmt.Errorf("fetch %s: %w", gitsrc.Redact(ps.GetRepo()), err)}
		}
		if !m.Has(tr.GetSha()) {
			return nil, fmt.Errorf("commit %s is not in %s (force-pushed away?)", tr.GetSha(), gitsrc.Redact(ps.GetRepo()))
		}
	}
	file := ps.GetPipeline()
	if file == "" {
		file = DefaultPipeline
	}
	data, err := m.ReadFile(tr.GetSha(), file, MaxPipeline)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	src := &gv1.GitSource{Url: ps.GetRepo(), Revision: tr.GetSha(), Secret: ps.GetCredential()}
	if tr.GetUntrusted() {
		// An untrusted change gets no secret, not even to clone: a public
		// repository still builds, a private one fails to clone.
		src.Secret = ""
	}
	js, err := spec.ParseWith(data, func(js *gv1.JobSpec) {
		if js.Name == "" {
			js.Name = ps.GetName()
		}
		js.Trigger = tr
		js.Source = src
		for _, t := range js.GetTasks() {
			if t != nil {
				useSource(t, src, tr)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline %s at %.12s: %w", file, tr.GetSha(), err)
	}
	for _, t := range js.Tasks {
		for _, n := range spec.SecretRefs(t) {
			if _, ok := c.d.FSM.Secret(n); !ok {
				return nil, fmt.Errorf("pipeline %s: task %s: secret %q does not exist", file, t.GetName(), n)
			}
		}
	}
	j := &gv1.Job{
		Id:             c.d.NewJobID(),
		Spec:           js,
		IdempotencyKey: fmt.Sprintf("project/%s/build/%d", ps.GetName(), b.GetNumber()),
	}
	for _, t := range js.Tasks {
		j.Tasks = append(j.Tasks, &gv1.Task{Name: t.Name, Spec: t})
	}
	return j, nil
}

// useSource points a task of a project's build at the commit built: exec
// tasks run in a checkout of it (unless they name an absolute directory),
// a build without a context builds it, and exec tasks learn the trigger
// from GANTRY_* variables (their scripts are not templates).
func useSource(t *gv1.TaskSpec, src *gv1.GitSource, tr *gv1.Trigger) {
	switch x := t.GetExecutor().(type) {
	case *gv1.TaskSpec_Exec:
		e := x.Exec
		if e.Checkout == nil && !path.IsAbs(e.GetDir()) {
			e.Checkout = src
		}
		env := map[string]string{
			"GANTRY_COMMIT": tr.GetSha(), "GANTRY_EVENT": tr.GetEvent(), "GANTRY_REF": tr.GetRef(),
			"GANTRY_BRANCH": tr.GetBranch(), "GANTRY_TAG": tr.GetTag(), "GANTRY_PROJECT": tr.GetProject(),
		}
		if tr.GetPullRequest() > 0 {
			env["GANTRY_PULL_REQUEST"] = fmt.Sprint(tr.GetPullRequest())
		}
		if e.Env == nil {
			e.Env = map[string]string{}
		}
		maps.Copy(env, e.Env) // the pipeline's own values win
		e.Env = env
	case *gv1.TaskSpec_Build:
		b := x.Build
		if b.Context == nil {
			b.Context = &gv1.BuildContext{}
		}
		if b.Context.Git == nil && b.Context.Dir == "" {
			b.Context.Git = src
		}
	}
}

// fetchRefs are the refs to fetch to get a trigger's commit: a pull
// request's head by name (its history comes with it), else every branch
// and tag.
func fetchRefs(tr *gv1.Trigger) []string {
	if r := fetchRef(tr); r != "" && !strings.HasPrefix(r, "refs/heads/") && !strings.HasPrefix(r, "refs/tags/") {
		return []string{r}
	}
	return nil
}
