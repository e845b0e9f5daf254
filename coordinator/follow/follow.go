// Package follow follows branches of Git repositories for whoever asks: it
// asks each remote which commit a followed branch points to (git
// ls-remote: no objects are fetched), every poll interval and at once when
// a push to the repository is announced, and tells the branch's
// subscribers what it found. Subscribers of the same branch of the same
// repository with the same credential share one poll, whatever they are:
// GitOps applications, or anything else that acts on new commits.
//
// A Follower keeps timers only. What is followed is what the subscribers
// say (the GitOps controller derives its subscriptions from the replicated
// state on every pass), and what a poll finds is theirs to record. It
// polls only while Run runs, on the leader.
package follow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/gitsrc"
)

// Defaults of Config.
const (
	DefaultEvery   = time.Minute
	DefaultTick    = 200 * time.Millisecond
	DefaultTimeout = 30 * time.Second
)

// ErrCredential: a branch names a credential the follower cannot use.
var ErrCredential = errors.New("credential not supported")

// Branch is what a subscription follows.
type Branch struct {
	// Repo is the repository URL; its spellings (NormalizeURL) share a
	// poll.
	Repo string
	// Branch is a branch or tag; empty means the remote's default branch.
	Branch string
	// Credential names the secret read to authenticate to the repository;
	// empty means none. Subscribers with different credentials never
	// share a poll, so none learns what only another's credential reads.
	Credential string
}

// key identifies the poll a branch shares with others.
func (b Branch) key() Branch {
	return Branch{Repo: NormalizeURL(b.Repo), Branch: b.Branch, Credential: b.Credential}
}

// Revision is what one poll of a branch found.
type Revision struct {
	// Branch is the branch as the subscription spelled it.
	Branch Branch
	// Commit is the commit the branch points to, when Err is nil.
	Commit string
	Err    error
}

// Config is what a Follower works with.
type Config struct {
	Log *zap.Logger
	// Resolve asks a remote which commit a branch points to; nil means
	// gitsrc.Resolve, which refuses a branch naming a credential
	// (ErrCredential).
	Resolve func(ctx context.Context, b Branch) (string, error)
	// Tick is how often Run looks for polls that are due; zero means
	// DefaultTick.
	Tick time.Duration
	// Timeout bounds one poll; zero means DefaultTimeout.
	Timeout time.Duration
}

// Follower polls the branches its subscriptions follow.
type Follower struct {
	cfg  Config
	log  *zap.Logger
	wake chan struct{}

	mu       sync.Mutex
	branches map[Branch]*branch // by key
}

// branch is one followed branch and its subscriptions.
type branch struct {
	key     Branch
	spelled Branch // as its first subscription spelled it: what is polled
	subs    map[*Subscription]struct{}
	every   time.Duration // the shortest of its subscriptions'
	last    time.Time     // last poll started; zero: never polled
	polling bool
	pushed  bool // a push was announced since the last poll started
}

// New returns a follower with no subscriptions.
func New(cfg Config) *Follower {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Resolve == nil {
		cfg.Resolve = resolve
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Follower{cfg: cfg, log: cfg.Log.Named("follow"), wake: make(chan struct{}, 1), branches: map[Branch]*branch{}}
}

func resolve(ctx context.Context, b Branch) (string, error) {
	if b.Credential != "" {
		return "", fmt.Errorf("branch %q of %s: credential %q: %w", b.Branch, gitsrc.Redact(b.Repo), b.Credential, ErrCredential)
	}
	return gitsrc.Resolve(ctx, b.Repo, b.Branch)
}

func (f *Follower) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Subscription is one subscriber's interest in a branch.
type Subscription struct {
	f      *Follower
	b      *branch // nil once closed
	branch Branch
	every  time.Duration
	notify func(Revision)
}

// Subscribe follows b until the subscription is closed: the branch is
// polled at once, then at least every every (zero means DefaultEvery) and
// at once when a push to its repository is announced. notify gets what
// each poll found, errors included; it is called from the poll's
// goroutine (one poll of a branch at a time) and must not block.
func (f *Follower) Subscribe(b Branch, every time.Duration, notify func(Revision)) *Subscription {
	if every <= 0 {
		every = DefaultEvery
	}
	s := &Subscription{f: f, branch: b, every: every, notify: notify}
	key := b.key()
	f.mu.Lock()
	br := f.branches[key]
	fresh := br == nil
	if fresh {
		br = &branch{key: key, spelled: b, subs: map[*Subscription]struct{}{}, every: every}
		f.branches[key] = br
	}
	br.subs[s] = struct{}{}
	br.every = min(br.every, every)
	s.b = br
	f.mu.Unlock()
	if fresh {
		f.poke()
	}
	return s
}

// Branch returns the branch s follows, as it was subscribed.
func (s *Subscription) Branch() Branch { return s.branch }

// Every returns the poll interval s asked for.
func (s *Subscription) Every() time.Duration { return s.every }

// Close ends the subscription; a branch left without subscriptions is no
// longer polled. Closing twice is harmless.
func (s *Subscription) Close() {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	br := s.b
	if br == nil {
		return
	}
	s.b = nil
	delete(br.subs, s)
	if len(br.subs) == 0 {
		delete(f.branches, br.key)
		return
	}
	if s.every == br.every {
		br.every = 0
		for o := range br.subs {
			if br.every == 0 || o.every < br.every {
				br.every = o.every
			}
		}
	}
}

// Announce takes a push announced for repository URLs: the followed
// branches of those repositories are polled at once. It reports whether
// any is followed; a URL nobody follows is forgotten at once, so what is
// announced never grows the follower.
func (f *Follower) Announce(urls []string) bool {
	pushed := map[string]bool{}
	for _, u := range urls {
		if u = NormalizeURL(u); u != "" {
			pushed[u] = true
		}
	}
	if len(pushed) == 0 {
		return false
	}
	followed := false
	f.mu.Lock()
	for _, br := range f.branches {
		if pushed[br.key.Repo] {
			br.pushed, followed = true, true
		}
	}
	f.mu.Unlock()
	if followed {
		f.poke()
	}
	return followed
}

// Run polls the branches that are due until ctx ends; it returns once
// every poll it started has answered (and been delivered, unless ctx
// ended first). Every branch is polled when Run starts: what was found
// before, by an earlier run, may not have been recorded.
func (f *Follower) Run(ctx context.Context) {
	f.mu.Lock()
	for _, br := range f.branches {
		br.last = time.Time{}
	}
	f.mu.Unlock()
	tick := time.NewTicker(f.cfg.Tick)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		f.pollDue(ctx, time.Now(), &wg)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-f.wake:
		}
	}
}

// pollDue starts a poll of every branch that is due at now and has none in
// flight.
func (f *Follower) pollDue(ctx context.Context, now time.Time, wg *sync.WaitGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, br := range f.branches {
		if br.polling || !(br.pushed || br.last.IsZero() || now.Sub(br.last) >= br.every) {
			continue
		}
		br.polling, br.pushed, br.last = true, false, now
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.poll(ctx, br)
		}()
	}
}

// poll asks the remote about one branch and tells its subscriptions of
// the moment.
func (f *Follower) poll(ctx context.Context, br *branch) {
	pctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	commit, err := f.cfg.Resolve(pctx, br.spelled)
	cancel()
	f.mu.Lock()
	br.polling = false
	subs := make([]*Subscription, 0, len(br.subs))
	for s := range br.subs {
		subs = append(subs, s)
	}
	f.mu.Unlock()
	if ctx.Err() != nil {
		return // no longer leading: the next leader polls again
	}
	if err != nil {
		f.log.Warn("poll repository", zap.String("repo", gitsrc.Redact(br.spelled.Repo)), zap.String("branch", br.spelled.Branch),
			zap.Int("subscriptions", len(subs)), zap.Error(err))
	}
	for _, s := range subs {
		s.notify(Revision{Branch: s.branch, Commit: commit, Err: err})
	}
}

// NormalizeURL makes the URLs of one repository compare equal whatever
// their spelling: no trailing slash or ".git", lower-case host.
func NormalizeURL(u string) string {
	u = strings.TrimSpace(u)
	u = strings.TrimSuffix(u, "/")
	u = strings.TrimSuffix(u, ".git")
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		host, path, _ := strings.Cut(rest, "/")
		u = strings.ToLower(scheme) + "://" + strings.ToLower(host) + "/" + path
		u = strings.TrimSuffix(u, "/")
	}
	return u
}
