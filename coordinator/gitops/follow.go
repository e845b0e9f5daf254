package gitops

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/follow"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// appFollow is an application's subscription to its branch.
type appFollow struct {
	repo, revision string
	credential     string
	every          time.Duration
	sub            *follow.Subscription
	pass           uint64 // last reconcile pass that saw the application
}

// follow keeps the subscription of an application to its branch as its
// spec says: a changed repository, branch or interval replaces it.
func (c *Controller) follow(spec *gv1.AppSpec) {
	name := spec.GetName()
	every := spec.GetPollInterval().AsDuration()
	if every <= 0 {
		every = DefaultPoll
	}
	f := c.following[name]
	if f != nil && f.repo == spec.GetRepo() && f.revision == spec.GetRevision() && f.credential == spec.GetCredential() && f.every == every {
		f.pass = c.pass
		return
	}
	if f != nil {
		f.sub.Close()
	}
	c.following[name] = &appFollow{
		repo: spec.GetRepo(), revision: spec.GetRevision(), credential: spec.GetCredential(), every: every, pass: c.pass,
		sub: c.follower.Subscribe(follow.Branch{Repo: spec.GetRepo(), Branch: spec.GetRevision(), Credential: spec.GetCredential()}, every,
			func(r follow.Revision) { c.found(name, r) }),
	}
}

// unfollowGone ends the subscriptions of applications the last pass did
// not see (deleted, or no longer following a repository).
func (c *Controller) unfollowGone() {
	for name, f := range c.following {
		if f.pass != c.pass {
			f.sub.Close()
			delete(c.following, name)
		}
	}
}

// unfollowAll ends every subscription: a node that no longer leads polls
// nothing.
func (c *Controller) unfollowAll() {
	for name, f := range c.following {
		f.sub.Close()
		delete(c.following, name)
	}
}

// resolveBranch polls a branch with Deps.Resolve, authenticated with the
// application's credential when it names one.
func (c *Controller) resolveBranch(ctx context.Context, b follow.Branch) (string, error) {
	cred, err := c.credential(b.Credential)
	if err != nil {
		return "", err
	}
	return c.d.Resolve(ctx, b.Repo, b.Branch, cred)
}

// credential opens the secret named name; nil for none.
func (c *Controller) credential(name string) ([]byte, error) {
	if name == "" {
		return nil, nil
	}
	if c.d.Credential == nil {
		return nil, fmt.Errorf("credential %q: %w", name, follow.ErrCredential)
	}
	return c.d.Credential(name)
}

// found takes what a poll of an application's branch found; the leader's
// loop records it. Errors are the follower's to log.
func (c *Controller) found(app string, r follow.Revision) {
	if r.Err != nil {
		return
	}
	c.seenMu.Lock()
	c.seen[app] = r
	c.seenMu.Unlock()
	c.poke()
}

func (c *Controller) forgetSeen() {
	c.seenMu.Lock()
	clear(c.seen)
	c.seenMu.Unlock()
}

// record commits what the polls found since the last look that is new to
// its applications, in one Raft entry.
func (c *Controller) record(ctx context.Context) {
	c.seenMu.Lock()
	if len(c.seen) == 0 {
		c.seenMu.Unlock()
		return
	}
	seen := c.seen
	c.seen = map[string]follow.Revision{}
	c.seenMu.Unlock()
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	var cmds []*gv1.Command
	at := timestamppb.Now()
	for _, name := range names {
		r := seen[name]
		a, ok := c.d.FSM.App(name)
		// A commit of a branch the application no longer follows is not
		// its news.
		if !ok || a.GetSpec().GetRepo() != r.Branch.Repo || a.GetSpec().GetRevision() != r.Branch.Branch || a.GetLatestRevision() == r.Commit {
			continue
		}
		cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_ObserveRevision{
			ObserveRevision: &gv1.ObserveRevisionCommand{Name: name, Revision: r.Commit},
		}})
	}
	if len(cmds) == 0 {
		return
	}
	if _, err := c.d.Proposer.Propose(ctx, cmds...); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("record new revision", zap.Int("apps", len(cmds)), zap.Error(err))
		}
		return
	}
	for _, cmd := range cmds {
		o := cmd.GetObserveRevision()
		c.log.Info("new revision", zap.String("app", o.GetName()), zap.String("revision", o.GetRevision()))
	}
}

// HandlePush takes a push announced to any coordinator's /hooks/git: the
// branches followed in the pushed repository are polled at once. Only the
// leader follows branches; on other nodes the push changes nothing.
func (c *Controller) HandlePush(m *nats.Msg) {
	c.follower.Announce(strings.Split(string(m.Data), "\n"))
}

// Matching returns the applications following a repository URL.
func (c *Controller) Matching(urls []string) []string {
	want := map[string]bool{}
	for _, u := range urls {
		if n := follow.NormalizeURL(u); n != "" {
			want[n] = true
		}
	}
	var out []string
	for _, a := range c.d.FSM.AppViews() {
		if r := a.Spec.GetRepo(); r != "" && want[follow.NormalizeURL(r)] {
			out = append(out, a.Spec.GetName())
		}
	}
	return out
}

// Resolve asks the remote for the newest commit of an application's branch.
func (c *Controller) Resolve(ctx context.Context, a *gv1.App) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cred, err := c.credential(a.GetSpec().GetCredential())
	if err != nil {
		return "", err
	}
	return c.d.Resolve(ctx, a.GetSpec().GetRepo(), a.GetSpec().GetRevision(), cred)
}
