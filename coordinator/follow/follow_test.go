package follow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	same := []string{
		"https://github.com/acme/shop",
		"https://GitHub.com/acme/shop.git",
		"https://github.com/acme/shop/",
		" https://github.com/acme/shop.git/ ",
	}
	for _, u := range same {
		if got := NormalizeURL(u); got != "https://github.com/acme/shop" {
			t.Errorf("NormalizeURL(%q) = %q", u, got)
		}
	}
	if NormalizeURL("https://github.com/acme/Shop") == NormalizeURL("https://github.com/acme/shop") {
		t.Error("paths are case-sensitive; they must not compare equal")
	}
	if got := NormalizeURL("file:///srv/repo.git"); got != "file:///srv/repo" {
		t.Errorf("file URL = %q", got)
	}
}

// fixture is a follower whose polls answer at once with commit "c1", and
// the answers its subscriptions got.
type fixture struct {
	f   *Follower
	ctx context.Context

	mu      sync.Mutex
	polls   []Branch              // branches polled, as spelled
	answers map[string][]Revision // subscriber -> answers
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	x := &fixture{ctx: ctx, answers: map[string][]Revision{}}
	x.f = New(Config{Resolve: func(_ context.Context, b Branch) (string, error) {
		x.mu.Lock()
		defer x.mu.Unlock()
		x.polls = append(x.polls, b)
		return "c1", nil
	}})
	return x
}

func (x *fixture) subscribe(name string, b Branch, every time.Duration) *Subscription {
	return x.f.Subscribe(b, every, func(r Revision) {
		x.mu.Lock()
		defer x.mu.Unlock()
		x.answers[name] = append(x.answers[name], r)
	})
}

// pass runs one pass of Run at now and waits for the polls it started.
func (x *fixture) pass(now time.Time) (polled int) {
	var wg sync.WaitGroup
	x.mu.Lock()
	before := len(x.polls)
	x.mu.Unlock()
	x.f.pollDue(x.ctx, now, &wg)
	wg.Wait()
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.polls) - before
}

func TestSubscribersOfABranchShareAPoll(t *testing.T) {
	t.Parallel()
	x := newFixture(t)
	now := time.Unix(1_800_000_000, 0)
	x.subscribe("a", Branch{Repo: "https://git.example/shop"}, time.Minute)
	x.subscribe("b", Branch{Repo: "https://GIT.example/shop.git/"}, time.Minute)
	x.subscribe("release", Branch{Repo: "https://git.example/shop", Branch: "release"}, time.Minute)
	x.subscribe("private", Branch{Repo: "https://git.example/shop", Credential: "token"}, time.Minute)
	if n := x.pass(now); n != 3 {
		t.Fatalf("%d polls for 3 branches (main, release, main with a credential): %v", n, x.polls)
	}
	for _, name := range []string{"a", "b", "release", "private"} {
		if got := x.answers[name]; len(got) != 1 || got[0].Commit != "c1" {
			t.Errorf("subscriber %s got %v; want one answer c1", name, got)
		}
	}
	if got := x.answers["b"][0].Branch.Repo; got != "https://GIT.example/shop.git/" {
		t.Errorf("answer to b names repository %q; want b's spelling", got)
	}
	if n := x.pass(now.Add(59 * time.Second)); n != 0 {
		t.Errorf("%d polls before the interval passed", n)
	}
	if n := x.pass(now.Add(time.Minute)); n != 3 {
		t.Errorf("%d polls once the interval passed; want 3", n)
	}
}

func TestShortestIntervalWins(t *testing.T) {
	t.Parallel()
	x := newFixture(t)
	now := time.Unix(1_800_000_000, 0)
	b := Branch{Repo: "https://git.example/shop"}
	slow := x.subscribe("slow", b, 5*time.Minute)
	fast := x.subscribe("fast", b, 10*time.Second)
	x.pass(now)
	if n := x.pass(now.Add(10 * time.Second)); n != 1 {
		t.Errorf("%d polls after 10s with a 10s subscriber; want 1", n)
	}
	fast.Close()
	fast.Close() // harmless
	if n := x.pass(now.Add(time.Minute)); n != 0 {
		t.Errorf("%d polls 50s later with only a 5m subscriber left; want 0", n)
	}
	if n := x.pass(now.Add(10*time.Second + 5*time.Minute)); n != 1 {
		t.Errorf("%d polls after 5m; want 1", n)
	}
	slow.Close()
	if n := x.pass(now.Add(time.Hour)); n != 0 {
		t.Errorf("a branch without subscribers was polled %d times", n)
	}
}

func TestAnnouncedPushPollsAtOnce(t *testing.T) {
	t.Parallel()
	x := newFixture(t)
	now := time.Unix(1_800_000_000, 0)
	x.subscribe("a", Branch{Repo: "https://git.example/shop"}, time.Hour)
	x.subscribe("b", Branch{Repo: "https://git.example/shop", Branch: "release"}, time.Hour)
	x.subscribe("c", Branch{Repo: "https://git.example/other"}, time.Hour)
	x.pass(now)
	if x.f.Announce([]string{"https://git.example/nobody", ""}) {
		t.Error("a push to a repository nobody follows reported as followed")
	}
	if !x.f.Announce([]string{"https://git.example/shop.git"}) {
		t.Error("a push to a followed repository reported as not followed")
	}
	if n := x.pass(now.Add(time.Second)); n != 2 {
		t.Errorf("%d polls after a push to a repository with 2 followed branches; want 2", n)
	}
	if n := x.pass(now.Add(2 * time.Second)); n != 0 {
		t.Errorf("a push polled %d more times", n)
	}
}

func TestRunStopsWithItsPolls(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	f := New(Config{Tick: time.Millisecond, Resolve: func(ctx context.Context, b Branch) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return "c1", nil
	}})
	got := make(chan Revision, 16)
	f.Subscribe(Branch{Repo: "https://git.example/shop"}, time.Hour, func(r Revision) { got <- r })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	<-started
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned with a poll in flight")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-done
	if len(got) != 0 {
		t.Errorf("a poll answered after Run's context ended was delivered: %v", <-got)
	}
	// The next term polls the branch again: the unanswered poll is not
	// left in flight.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	select {
	case r := <-got:
		if r.Commit != "c1" || r.Err != nil {
			t.Errorf("answer %+v; want c1", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("branch not polled again after Run restarted")
	}
}

func TestDefaultResolveRefusesCredentials(t *testing.T) {
	t.Parallel()
	_, err := New(Config{}).cfg.Resolve(context.Background(), Branch{Repo: "https://git.example/shop", Credential: "token"})
	if !errors.Is(err, ErrCredential) {
		t.Errorf("resolve with a credential: %v; want ErrCredential", err)
	}
}

// BenchmarkPollDue measures the look for due polls Run makes every tick
// over 5,000 branches, none due: the follower's share of what the GitOps
// controller's reconcile pass did before polling had its own package.
func BenchmarkPollDue(b *testing.B) {
	f := New(Config{Resolve: func(context.Context, Branch) (string, error) { return "c1", nil }})
	for i := range 5000 {
		f.Subscribe(Branch{Repo: fmt.Sprintf("https://git.example/app-%05d", i)}, time.Minute, func(Revision) {})
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	now := time.Now()
	f.pollDue(ctx, now, &wg) // polls every branch once
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f.pollDue(ctx, now.Add(time.Second), &wg)
	}
}
