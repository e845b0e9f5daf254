package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// DefaultHealthTimeout is how long a rollout may take when the spec says nothing.
const DefaultHealthTimeout = 5 * time.Minute

// DeployRequest is one attempt of a deploy task.
type DeployRequest struct {
	// Spec.App is filled in by the caller; images are already rendered.
	Spec *gv1.DeploySpec
	// Fence is the attempt's fencing token, monotonic across all deploys.
	Fence   uint64
	JobID   string
	Task    string
	Attempt int32
	// WorkDir is scratch space for the Git checkout, removed by the caller.
	WorkDir string
	// Secrets holds the values of the secrets the spec names (the Git
	// credential), by secret name. A name missing from it fails the deploy
	// (a job failure).
	Secrets map[string][]byte
}

// Result is the outcome of a deploy.
type Result struct {
	// Class is FAILURE_CLASS_UNSPECIFIED on success, FAILURE_CLASS_INFRA
	// when the cluster could not be reached or failed, FAILURE_CLASS_JOB
	// otherwise (bad manifests, stale fence, unhealthy rollout, canceled).
	Class gv1.FailureClass
	// Err is nil on success.
	Err error
	// Outputs are recorded with the task's result (OutputRevision, ...).
	Outputs map[string]string
}

// Success reports whether the deploy succeeded.
func (r Result) Success() bool {
	return r.Err == nil && r.Class == gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED
}

// deploy is the state of one Deploy call.
type deploy struct {
	c       *Cluster
	req     DeployRequest
	spec    *gv1.DeploySpec
	app     string
	ns      string
	timeout time.Duration
	out     Sink
	log     *zap.Logger
	outputs map[string]string
}

// Deploy applies the manifests of req, waits for them to become healthy and
// rolls back to the last healthy manifests when they do not (see the
// package documentation). Progress is written to out.
func (c *Cluster) Deploy(ctx context.Context, req DeployRequest, out Sink) Result {
	spec := req.Spec
	if spec == nil || spec.GetApp() == "" {
		return Result{Class: gv1.FailureClass_FAILURE_CLASS_JOB, Err: errors.New("deploy spec without application")}
	}
	d := &deploy{
		c: c, req: req, spec: spec, app: spec.GetApp(), ns: spec.GetNamespace(), out: out,
		timeout: DefaultHealthTimeout,
		log: c.log.With(zap.String("app", spec.GetApp()), zap.Uint64("fence", req.Fence),
			zap.String("job", req.JobID), zap.String("task", req.Task), zap.Int32("attempt", req.Attempt)),
		outputs: map[string]string{},
	}
	if d.ns == "" {
		d.ns = "default"
	}
	if t := spec.GetHealthTimeout().AsDuration(); t > 0 {
		d.timeout = t
	}
	err := d.run(ctx)
	if err == nil {
		return Result{Outputs: d.outputs}
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("canceled: %w", context.Cause(ctx))
	}
	d.logf("deploy failed: %v", err)
	d.log.Info("deploy failed", zap.Error(err))
	return Result{Class: classify(err), Err: err, Outputs: d.outputs}
}

func (d *deploy) logf(format string, args ...any) {
	if d.out == nil {
		return
	}
	d.out.Write(gv1.LogStream_LOG_STREAM_SYSTEM, []byte(fmt.Sprintf(format, args...)+"\n"))
}

func (d *deploy) run(ctx context.Context) error {
	workDir := d.req.WorkDir
	if workDir == "" {
		dir, err := os.MkdirTemp("", "gantry-deploy-")
		if err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		defer os.RemoveAll(dir)
		workDir = dir
	}
	manifests, revision, err := loadSource(ctx, d.spec.GetSource(), workDir, d.req.Secrets)
	if err != nil {
		return err
	}
	d.outputs[OutputRevision] = revision
	if revision != "" {
		d.logf("loaded %d objects at revision %s", len(manifests), revision)
	} else {
		d.logf("loaded %d objects", len(manifests))
	}
	substituteImages(manifests, d.spec.GetImages())
	images, err := json.Marshal(deployedImages(manifests))
	if err != nil {
		return fmt.Errorf("encode images: %w", err)
	}
	d.outputs[OutputImages] = string(images)
	for _, m := range manifests {
		stamp(m, d.app, revision, d.req.Fence)
	}
	objs, err := d.c.resolve(ctx, manifests, d.ns)
	if err != nil {
		return err
	}
	d.outputs[OutputObjects] = strconv.Itoa(len(objs))

	// The inventory lives in the application's namespace: create it first.
	if err := d.ensureNamespace(ctx, d.ns); err != nil {
		return err
	}
	prev, err := d.acquire(ctx, objs)
	if err != nil {
		return err
	}
	gz, err := gzipObjects(manifests)
	if err != nil {
		return err
	}
	if err := d.applyAll(ctx, objs); err != nil {
		return err
	}
	kept, err := d.pruneStale(ctx, prev.objects, objs)
	if err != nil {
		return err
	}
	if _, err := d.c.updateInventory(ctx, d.ns, d.app, d.req.Fence, func(inv *inventory) {
		inv.objects = kept
		inv.manifests = gz
		inv.revision = revision
		inv.job, inv.task = d.req.JobID, d.req.Task
	}); err != nil {
		return err
	}

	start := time.Now()
	cause := d.waitHealthy(ctx, objs)
	if cause == nil {
		d.logf("healthy in %.1fs", time.Since(start).Seconds())
		if _, err := d.c.updateInventory(ctx, d.ns, d.app, d.req.Fence, func(inv *inventory) {
			inv.lastGood, inv.lastGoodRevision = gz, revision
		}); err != nil {
			return err
		}
		d.outputs[OutputResult] = ResultSucceeded
		d.log.Info("deployed", zap.String("revision", revision), zap.Int("objects", len(objs)))
		return nil
	}
	if !errors.Is(cause, ErrUnhealthy) || d.spec.GetNoRollback() || len(prev.lastGood) == 0 {
		return cause
	}
	return d.rollback(ctx, prev, objs, cause)
}

// acquire takes the application for this attempt: it records the attempt's
// fence in the inventory unless a newer deploy holds it, and returns the
// inventory as it was. The objects about to be applied are added to the
// inventory's at once, so that a deploy failing half-way leaves none of
// them untracked (and unprunable).
func (d *deploy) acquire(ctx context.Context, objs []*object) (*inventory, error) {
	var prev inventory
	refs := make([]objRef, len(objs))
	for i, o := range objs {
		refs[i] = o.ref
	}
	if _, err := d.c.updateInventory(ctx, d.ns, d.app, d.req.Fence, func(inv *inventory) {
		prev = *inv
		inv.objects = unionRefs(inv.objects, refs)
	}); err != nil {
		return nil, err
	}
	if prev.fence == 0 {
		d.logf("first deploy of %s (fence %d)", d.app, d.req.Fence)
	} else {
		d.logf("took %s at fence %d (previous deploy: fence %d%s)", d.app, d.req.Fence, prev.fence, revisionSuffix(prev.revision))
	}
	return &prev, nil
}

// rollback re-applies the last healthy manifests after a rollout that did
// not become healthy, and returns the failure to report.
func (d *deploy) rollback(ctx context.Context, prev *inventory, failed []*object, cause error) error {
	rev := prev.lastGoodRevision
	d.logf("%v; rolling back to %s", cause, orNone(rev))
	manifests, err := gunzipObjects(prev.lastGood)
	if err != nil {
		return fmt.Errorf("%w; rollback: last healthy manifests of %s: %w", cause, d.app, err)
	}
	for _, m := range manifests {
		stamp(m, d.app, rev, d.req.Fence)
	}
	objs, err := d.c.resolve(ctx, manifests, d.ns)
	if err != nil {
		return fmt.Errorf("%w; rollback: %w", cause, err)
	}
	// The inventory records what is applied now, with this attempt's fence.
	gz, err := gzipObjects(manifests)
	if err != nil {
		return fmt.Errorf("%w; rollback: %w", cause, err)
	}
	// Secrets stay as they are: the inventory keeps no values to restore.
	if err := d.applyAll(ctx, slices.DeleteFunc(slices.Clone(objs), func(o *object) bool { return isSecret(o.u) })); err != nil {
		return fmt.Errorf("%w; rollback: %w", cause, err)
	}
	if err := d.keepSecrets(ctx, objs); err != nil {
		return fmt.Errorf("%w; rollback: %w", cause, err)
	}
	refs := make([]objRef, len(failed))
	for i, o := range failed {
		refs[i] = o.ref
	}
	kept, err := d.pruneStale(ctx, refs, objs)
	if err != nil {
		return fmt.Errorf("%w; rollback: %w", cause, err)
	}
	if _, err := d.c.updateInventory(ctx, d.ns, d.app, d.req.Fence, func(inv *inventory) {
		inv.objects = kept
		inv.manifests = gz
		inv.revision = rev
		inv.job, inv.task = d.req.JobID, d.req.Task
	}); err != nil {
		return fmt.Errorf("%w; rollback: %w", cause, err)
	}
	start := time.Now()
	if err := d.waitHealthy(ctx, objs); err != nil {
		return fmt.Errorf("%w; rollback to %s did not become healthy either: %w", cause, orNone(rev), err)
	}
	d.logf("rolled back to %s, healthy in %.1fs", orNone(rev), time.Since(start).Seconds())
	d.outputs[OutputRolledBackTo] = rev
	d.outputs[OutputResult] = ResultRolledBack
	return fmt.Errorf("%w; rolled back to %s", cause, orNone(rev))
}

// keepSecrets says, in a rollback, which Secrets of objs were left as they
// are and which are missing: Gantry cannot restore them.
func (d *deploy) keepSecrets(ctx context.Context, objs []*object) error {
	kept := 0
	for _, o := range objs {
		if !isSecret(o.u) {
			continue
		}
		_, err := d.c.resource(o).Get(ctx, o.ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			d.logf("could not restore %s: Gantry keeps no Secret values to roll back to", o.ref)
		case err != nil:
			return fmt.Errorf("read %s: %w", o.ref, err)
		default:
			kept++
		}
	}
	if kept > 0 {
		d.logf("left %d Secrets as they are: a rollback restores no Secret values", kept)
	}
	return nil
}

// orNone names an empty revision (inline or directory manifests).
func orNone(rev string) string {
	if rev == "" {
		return "the previous manifests"
	}
	return rev
}

func revisionSuffix(rev string) string {
	if rev == "" {
		return ""
	}
	return ", revision " + rev
}

// shortDuration renders 5m0s as 5m and 1h0m0s as 1h.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// unionRefs returns a followed by the refs of b not in a.
func unionRefs(a []objRef, b []objRef) []objRef {
	out := slices.Clone(a)
	for _, r := range b {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
