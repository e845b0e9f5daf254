package project

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/forge"
	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// pollTimeout bounds one poll of one repository.
const pollTimeout = 30 * time.Second

// ParseCron parses a project's cron schedule: five fields (minute, hour,
// day of month, month, day of week), or a descriptor such as @daily; UTC.
func ParseCron(s string) (cron.Schedule, error) {
	return cron.ParseStandard(s)
}

// pollAndCron fires due cron slots and polls due repositories. A poll is
// the fallback of webhooks: a commit a lost webhook never announced is
// built once it is seen (the trigger key is the same either way). Every
// project is polled when a node starts leading, then every poll_every
// (jittered by up to a tenth, so repositories are not polled in step).
func (c *Controller) pollAndCron(ctx context.Context) {
	now := c.d.Now()
	seen := map[string]bool{}
	for _, p := range c.d.FSM.ProjectHeads() {
		name := p.GetSpec().GetName()
		seen[name] = true
		c.fireCron(ctx, p, now)
		if next, ok := c.polls[name]; ok && now.Before(next) {
			continue
		}
		every := p.GetSpec().GetPollEvery().AsDuration()
		if every <= 0 {
			every = DefaultPoll
		}
		c.polls[name] = now.Add(every - time.Duration(rand.Int64N(int64(every)/10+1)))
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		err := c.poll(pctx, p)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Warn("poll repository", zap.String("project", name), zap.String("repository", gitsrc.Redact(p.GetSpec().GetRepo())), zap.Error(err))
		}
	}
	for name := range c.polls {
		if !seen[name] {
			delete(c.polls, name)
		}
	}
}

// candidate is a ref a poll found that the project builds.
type candidate struct {
	tr *gv1.Trigger
}

// poll lists the repository's refs (and open pull requests through the
// forge's API when there is one) and triggers a build for each ref the
// project builds whose commit is not the one last seen. The first poll of
// a project only records what it finds.
func (c *Controller) poll(ctx context.Context, p *gv1.Project) error {
	s := p.GetSpec()
	cred, err := c.credential(p)
	if err != nil {
		return err
	}
	refs, err := c.refs(ctx, p, cred)
	if err != nil {
		return err
	}
	events := s.GetEvents()
	if len(events) == 0 {
		events = defaultEvents
	}
	has := func(e forge.EventKind) bool {
		for _, x := range events {
			if x == string(e) {
				return true
			}
		}
		return false
	}
	var found []candidate
	for ref, sha := range refs {
		tr := &gv1.Trigger{Ref: ref, Sha: sha, Source: "poll", Repo: s.GetRepo()}
		switch {
		case strings.HasPrefix(ref, "refs/heads/") && has(forge.Push):
			tr.Event, tr.Branch = string(forge.Push), strings.TrimPrefix(ref, "refs/heads/")
			if len(s.GetBranches()) > 0 && !fsm.MatchBranch(s.GetBranches(), tr.Branch) {
				continue
			}
		case strings.HasPrefix(ref, "refs/tags/") && has(forge.Tag):
			tr.Event, tr.Tag = string(forge.Tag), strings.TrimPrefix(ref, "refs/tags/")
		default:
			continue
		}
		found = append(found, candidate{tr})
	}
	if has(forge.PullRequest) {
		if cl, repo, err := c.forge(p); err == nil && cl != nil {
			prs, err := cl.OpenPullRequests(ctx, repo)
			if err != nil {
				c.log.Warn("list pull requests", zap.String("project", s.GetName()), zap.Error(err))
			}
			for _, pr := range prs {
				if len(s.GetBranches()) > 0 && !fsm.MatchBranch(s.GetBranches(), pr.Base) {
					continue
				}
				found = append(found, candidate{&gv1.Trigger{
					Event: string(forge.PullRequest), Ref: pr.Ref, Branch: pr.Base, Sha: pr.SHA,
					PullRequest: int32(pr.Number), Untrusted: pr.Fork, Author: pr.Author, Source: "poll", Repo: s.GetRepo(),
				}})
			}
		}
	}
	if !p.GetBaseline() {
		seen := make(map[string]string, len(found))
		for _, f := range found {
			seen[f.tr.Ref] = f.tr.Sha
		}
		_, err := c.propose(ctx, &gv1.Command{At: timestamppb.New(c.d.Now()), Cmd: &gv1.Command_ObserveRefs{ObserveRefs: &gv1.ObserveRefsCommand{
			Project: s.GetName(), Refs: seen, Baseline: true,
		}}})
		return err
	}
	for _, f := range found {
		tr := f.tr
		before, known := p.GetRefs()[tr.Ref]
		if known && before == tr.Sha {
			continue
		}
		tr.Before = before
		if why := c.filter(ctx, p, tr, nil, true); why != "" {
			// Record the commit so the next poll does not weigh it again.
			c.log.Info("poll: not built", zap.String("project", s.GetName()), zap.String("ref", tr.Ref), zap.String("why", why))
			if _, err := c.propose(ctx, &gv1.Command{At: timestamppb.New(c.d.Now()), Cmd: &gv1.Command_ObserveRefs{ObserveRefs: &gv1.ObserveRefsCommand{
				Project: s.GetName(), Refs: map[string]string{tr.Ref: tr.Sha},
			}}}); err != nil {
				return err
			}
			continue
		}
		if tr.Event == string(forge.PullRequest) && !tr.Untrusted {
			tr.Untrusted = !c.trusted(ctx, p, tr.Author)
		}
		res, err := c.Trigger(ctx, s.GetName(), tr, "", nil)
		if err != nil {
			return err
		}
		c.log.Info("poll trigger", zap.String("project", s.GetName()), zap.String("event", tr.Event), zap.String("ref", tr.Ref),
			zap.String("commit", tr.Sha), zap.Uint64("build", res.Build), zap.Bool("existing", res.Existing))
	}
	return nil
}

// fireCron triggers the newest due slot of a project's schedule, once: the
// slot is stamped into the trigger (its key), and the state remembers the
// last one fired, so a new leader neither fires it again nor fires every
// slot missed while the cluster was down.
func (c *Controller) fireCron(ctx context.Context, p *gv1.Project, now time.Time) {
	s := p.GetSpec()
	if s.GetCron() == "" {
		return
	}
	sched, err := ParseCron(s.GetCron())
	if err != nil {
		return // refused at create
	}
	from := p.GetCreatedAt().AsTime()
	if p.GetLastCron() != nil {
		from = p.GetLastCron().AsTime()
	}
	slot, ok := dueSlot(sched, from, now)
	if !ok {
		return
	}
	cred, err := c.credential(p)
	if err != nil {
		c.log.Warn("cron", zap.String("project", s.GetName()), zap.Error(err))
		return
	}
	branch := cronBranch(s)
	rctx, cancel := context.WithTimeout(ctx, pollTimeout)
	sha, err := gitsrc.ResolveAuth(rctx, s.GetRepo(), branch, cred)
	cancel()
	if err != nil {
		c.log.Warn("cron: resolve branch", zap.String("project", s.GetName()), zap.String("branch", branch), zap.Error(err))
		return
	}
	tr := &gv1.Trigger{Event: string(forge.Cron), Sha: sha, Source: "cron", Repo: s.GetRepo(), Slot: timestamppb.New(slot)}
	if branch != "" {
		tr.Ref, tr.Branch = "refs/heads/"+branch, branch
	} else {
		tr.Ref = "HEAD"
	}
	res, err := c.Trigger(ctx, s.GetName(), tr, "", nil)
	if err != nil {
		c.log.Warn("cron trigger", zap.String("project", s.GetName()), zap.Error(err))
		return
	}
	c.log.Info("cron trigger", zap.String("project", s.GetName()), zap.Time("slot", slot), zap.Uint64("build", res.Build), zap.Bool("existing", res.Existing))
}

// cronBranch is the branch a cron build builds: the project's first
// branch that is a name rather than a pattern, else the remote's HEAD
// (""), its default branch.
func cronBranch(s *gv1.ProjectSpec) string {
	for _, b := range s.GetBranches() {
		if !strings.ContainsAny(b, "*?[\\") {
			return b
		}
	}
	return ""
}

// dueSlot is the newest slot of sched after from that is not after now:
// slots missed while no node led are not fired one by one, the newest
// stands for them. False when none is due.
func dueSlot(sched cron.Schedule, from, now time.Time) (time.Time, bool) {
	slot := sched.Next(from)
	if slot.IsZero() || now.Before(slot) {
		return time.Time{}, false
	}
	for range 100_000 {
		n := sched.Next(slot)
		if n.IsZero() || n.After(now) {
			break
		}
		slot = n
	}
	return slot, true
}
