package project

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/follow"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/forge"
	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Errors of webhook deliveries, for the API edge to map.
var (
	// ErrNoProject: no project follows the delivery's repository.
	ErrNoProject = errors.New("no project follows this repository")
	// ErrUnverified: the delivery's signature matches no project's
	// webhook secret.
	ErrUnverified = errors.New("webhook signature does not verify")
)

// Events a project builds when it names none.
var defaultEvents = []string{string(forge.Push), string(forge.Tag), string(forge.PullRequest)}

// Key is the idempotency key of a trigger: one build per project, event
// kind, ref and commit (a cron slot: per slot).
func Key(tr *gv1.Trigger) string {
	if tr.GetEvent() == string(forge.Cron) {
		return fmt.Sprintf("cron/%d", tr.GetSlot().AsTime().Unix())
	}
	return tr.GetEvent() + "/" + tr.GetRef() + "/" + tr.GetSha()
}

// Delivery is the outcome of one webhook delivery.
type Delivery struct {
	Builds  []fsm.Result
	Project []string // the project of each build
	Ignored []string
}

// Deliver takes a forge's webhook delivery: it finds the projects
// following the repository, verifies the signature with each one's
// webhook secret, and records a trigger (TriggerBuild) for each project
// the event concerns, before answering. Only the leader may call it.
func (c *Controller) Deliver(ctx context.Context, h http.Header, body []byte) (Delivery, error) {
	var out Delivery
	kind, ok := forge.Detect(h)
	if !ok {
		return out, fmt.Errorf("%w: no X-Gitea-Event, X-Forgejo-Event, X-GitHub-Event or X-Gitlab-Event header", forge.ErrPayload)
	}
	urls, err := forge.RepoURLs(kind, h, body)
	if err != nil {
		return out, err
	}
	var matched []*gv1.Project
	want := map[string]bool{}
	for _, u := range urls {
		want[follow.NormalizeURL(u)] = true
	}
	for _, p := range c.d.FSM.Projects() {
		if want[follow.NormalizeURL(p.GetSpec().GetRepo())] {
			matched = append(matched, p)
		}
	}
	if len(matched) == 0 {
		return out, fmt.Errorf("%w: %s", ErrNoProject, strings.Join(urls, ", "))
	}
	verified := 0
	for _, p := range matched {
		secret, err := c.webhookSecret(p)
		if err != nil {
			c.log.Warn("webhook secret", zap.String("project", p.Spec.GetName()), zap.Error(err))
			continue
		}
		if forge.Verify(kind, h, body, secret) != nil {
			continue
		}
		verified++
		ev, err := forge.Parse(kind, h, body)
		if errors.Is(err, forge.ErrIgnored) {
			out.Ignored = append(out.Ignored, p.Spec.GetName()+": "+err.Error())
			continue
		}
		if err != nil {
			return out, err
		}
		tr := &gv1.Trigger{
			Event: string(ev.Kind), Ref: ev.Ref, Branch: ev.Branch, Tag: ev.Tag, Sha: ev.SHA,
			PullRequest: int32(ev.PullRequest), Untrusted: ev.Fork, Author: ev.Author,
			Source: "webhook", Repo: p.Spec.GetRepo(), Before: ev.Before,
		}
		if why := c.filter(ctx, p, tr, ev.Changed, ev.Changed == nil || ev.Truncated); why != "" {
			out.Ignored = append(out.Ignored, p.Spec.GetName()+": "+why)
			continue
		}
		if tr.Event == string(forge.PullRequest) && !tr.Untrusted {
			tr.Untrusted = !c.trusted(ctx, p, tr.Author)
		}
		res, err := c.Trigger(ctx, p.Spec.GetName(), tr, "", nil)
		if err != nil {
			return out, err
		}
		c.log.Info("webhook trigger", zap.String("project", p.Spec.GetName()), zap.String("event", tr.Event),
			zap.String("ref", tr.Ref), zap.String("commit", tr.Sha), zap.Uint64("build", res.Build),
			zap.Bool("existing", res.Existing), zap.String("delivery", ev.Delivery))
		out.Builds = append(out.Builds, res)
		out.Project = append(out.Project, p.Spec.GetName())
	}
	if verified == 0 {
		return out, fmt.Errorf("%w for any project following %s", ErrUnverified, strings.Join(urls, ", "))
	}
	return out, nil
}

// Trigger records a build of project for tr once per key (empty: Key(tr)).
// An untrusted trigger is held for approval. stamp, if set, decorates the
// command (the API's caller, for the audit log).
func (c *Controller) Trigger(ctx context.Context, project string, tr *gv1.Trigger, key string, stamp func(*gv1.Command) *gv1.Command) (fsm.Result, error) {
	if key == "" {
		key = Key(tr)
	}
	cmd := &gv1.Command{At: timestamppb.New(c.d.Now()), Cmd: &gv1.Command_TriggerBuild{TriggerBuild: &gv1.TriggerBuildCommand{
		Project: project, Trigger: tr, Key: key, Hold: tr.GetUntrusted(),
	}}}
	if stamp != nil {
		cmd = stamp(cmd)
	}
	res, err := c.propose(ctx, cmd)
	if err != nil {
		return res, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	c.cancelAttempts(res.Canceled, fmt.Sprintf("superseded by build %d", res.Build))
	c.poke()
	return res, nil
}

// Run builds ref (branch, tag or commit; empty: the default branch) of a
// project now: a manual trigger, a new build every call.
func (c *Controller) Run(ctx context.Context, project, ref string, stamp func(*gv1.Command) *gv1.Command) (fsm.Result, error) {
	p, ok := c.d.FSM.Project(project)
	if !ok {
		return fsm.Result{}, fmt.Errorf("project %q: %w", project, fsm.ErrNotFound)
	}
	cred, err := c.credential(p)
	if err != nil {
		return fsm.Result{}, err
	}
	sha, err := gitsrc.ResolveAuth(ctx, p.Spec.GetRepo(), ref, cred)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("ref %q: %w", ref, err)
	}
	tr := &gv1.Trigger{Event: string(forge.Manual), Sha: sha, Source: "manual", Repo: p.Spec.GetRepo()}
	switch {
	case strings.HasPrefix(ref, "refs/tags/"):
		tr.Ref, tr.Tag = ref, strings.TrimPrefix(ref, "refs/tags/")
	case strings.HasPrefix(ref, "refs/heads/"):
		tr.Ref, tr.Branch = ref, strings.TrimPrefix(ref, "refs/heads/")
	case ref == sha:
		tr.Ref = sha
	case ref == "":
		tr.Ref = "HEAD"
	default:
		// A branch or tag name: the remote said which it resolved.
		tr.Ref, tr.Branch = "refs/heads/"+ref, ref
		if refs, err := c.refs(ctx, p, cred); err == nil {
			if _, isBranch := refs["refs/heads/"+ref]; !isBranch {
				if _, isTag := refs["refs/tags/"+ref]; isTag {
					tr.Ref, tr.Branch, tr.Tag = "refs/tags/"+ref, "", ref
				}
			}
		}
	}
	// Every manual run is a build of its own.
	var nonce [8]byte
	rand.Read(nonce[:])
	return c.Trigger(ctx, project, tr, Key(tr)+"/"+hex.EncodeToString(nonce[:]), stamp)
}

// refs lists a project repository's refs.
func (c *Controller) refs(ctx context.Context, p *gv1.Project, cred []byte) (map[string]string, error) {
	m, err := c.mirror(p.Spec.GetRepo())
	if err != nil {
		return nil, err
	}
	return m.Refs(ctx, cred)
}

// filter says why a project does not build tr ("" when it does): its
// events, branches and path filters. changed lists the changed paths when
// known (unknown: the mirror computes them from tr.Before when the project
// has path filters).
func (c *Controller) filter(ctx context.Context, p *gv1.Project, tr *gv1.Trigger, changed []string, unknown bool) string {
	s := p.GetSpec()
	events := s.GetEvents()
	if len(events) == 0 {
		events = defaultEvents
	}
	if !slices.Contains(events, tr.GetEvent()) {
		return fmt.Sprintf("event %s is not built (events: %s)", tr.GetEvent(), strings.Join(events, ","))
	}
	if tr.GetEvent() != string(forge.Tag) && len(s.GetBranches()) > 0 && !fsm.MatchBranch(s.GetBranches(), tr.GetBranch()) {
		return fmt.Sprintf("branch %s is not built (branches: %s)", tr.GetBranch(), strings.Join(s.GetBranches(), ","))
	}
	if len(s.GetPaths()) == 0 && len(s.GetPathsIgnore()) == 0 {
		return ""
	}
	if unknown {
		changed = c.changed(ctx, p, tr)
		if changed == nil {
			return "" // cannot tell: build rather than miss a change
		}
	}
	if !PathsMatch(s.GetPaths(), s.GetPathsIgnore(), changed) {
		return fmt.Sprintf("no changed path matches (paths: %s; paths_ignore: %s)", strings.Join(s.GetPaths(), ","), strings.Join(s.GetPathsIgnore(), ","))
	}
	return ""
}

// changed computes the paths tr changes with the mirror, nil when it
// cannot tell.
func (c *Controller) changed(ctx context.Context, p *gv1.Project, tr *gv1.Trigger) []string {
	cred, err := c.credential(p)
	if err != nil {
		return nil
	}
	m, err := c.mirror(p.Spec.GetRepo())
	if err != nil {
		return nil
	}
	if !m.Has(tr.GetSha()) || (tr.GetBefore() != "" && strings.Trim(tr.GetBefore(), "0") != "" && !m.Has(tr.GetBefore())) {
		if err := m.Fetch(ctx, cred, fetchRefs(tr)...); err != nil {
			return nil
		}
	}
	base := tr.GetBefore()
	if base != "" && strings.Trim(base, "0") != "" && !m.Has(base) {
		base = "" // force-pushed past: compare with the parent
	}
	paths, truncated, err := m.Changed(base, tr.GetSha(), MaxChanged)
	if err != nil || truncated {
		return nil
	}
	return paths
}

// PathsMatch applies path filters to changed files: some path must match
// paths (any when empty) and not every matching one may match
// paths_ignore. Patterns are path.Match globs, a trailing "/**" (or a
// directory "dir/") matching everything below. No changed file at all
// (an empty push) builds.
func PathsMatch(paths, ignore, changed []string) bool {
	if len(changed) == 0 {
		return true
	}
	for _, f := range changed {
		if len(paths) > 0 && !anyGlob(paths, f) {
			continue
		}
		if anyGlob(ignore, f) {
			continue
		}
		return true
	}
	return false
}

func anyGlob(globs []string, f string) bool {
	for _, g := range globs {
		if strings.HasSuffix(g, "/**") || strings.HasSuffix(g, "/") {
			dir := strings.TrimSuffix(strings.TrimSuffix(g, "**"), "/")
			if strings.HasPrefix(f, dir+"/") {
				return true
			}
			continue
		}
		if g == f {
			return true
		}
		if ok, _ := path.Match(g, f); ok {
			return true
		}
		// A pattern without a slash matches the base name anywhere.
		if !strings.Contains(g, "/") {
			if ok, _ := path.Match(g, path.Base(f)); ok {
				return true
			}
		}
	}
	return false
}

// trusted asks the forge whether author may run builds with secrets: a
// collaborator of the repository. Without a forge API (or when it cannot
// tell) a pull request is untrusted.
func (c *Controller) trusted(ctx context.Context, p *gv1.Project, author string) bool {
	if author == "" {
		return false
	}
	cl, repo, err := c.forge(p)
	if err != nil || cl == nil {
		return false
	}
	ok, err := cl.IsCollaborator(ctx, repo, author)
	if err != nil {
		c.log.Warn("ask forge for collaborator", zap.String("project", p.Spec.GetName()), zap.String("author", author), zap.Error(err))
		return false
	}
	return ok
}

// fetchRef is the ref to fetch for a trigger's commit.
func fetchRef(tr *gv1.Trigger) string {
	ref := tr.GetRef()
	if strings.HasPrefix(ref, "refs/") {
		return ref
	}
	return ""
}
