package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// ErrNotLeader is returned when this node cannot commit because it is not
// (or stopped being) the leader.
var ErrNotLeader = errors.New("not the leader")

// ErrTimeout: the entry's outcome is unknown; it may still commit.
var ErrTimeout = errors.New("commit timed out")

// ErrUpgrading: a command's type is not known yet to every voter (a
// rolling upgrade is under way); nothing was proposed.
var ErrUpgrading = errors.New("not every coordinator knows this command yet")

// Proposer turns commands into Raft log entries. Concurrent proposals are
// grouped: while entries are in flight, new commands queue up and leave as
// one entry, so under load many commands share one fsync.
type Proposer struct {
	raft     *raft.Raft
	reqs     chan *proposal
	inflight chan struct{}
	maxBatch int

	// Timeout bounds the wait for one entry's commit; past it the outcome
	// is unknown to the caller.
	Timeout time.Duration

	// Observe, when set, is told the size and commit time of every entry.
	Observe func(commands int, took time.Duration)

	// Gate, when set, may refuse a command before it is proposed (an error
	// wrapping ErrUpgrading); then none of the call's commands is. Set it
	// before the proposer is used.
	Gate func(*gv1.Command) error

	// LaterDelay is the longest a command given to Later waits for an
	// entry to ride with before it leaves alone.
	LaterDelay time.Duration
	mu         sync.Mutex
	later      []*proposal
	laterTimer *time.Timer
}

type proposal struct {
	cmds []*gv1.Command
	done chan proposalResult
	// then, instead of done, is called with the only command's result
	// (Later).
	then func(fsm.Result, error)
}

// answer gives pr its results or error.
func (pr *proposal) answer(r proposalResult) {
	if pr.then == nil {
		pr.done <- r
		return
	}
	switch {
	case r.err != nil:
		pr.then(fsm.Result{}, r.err)
	case len(r.results) == 1:
		pr.then(r.results[0], r.results[0].Err)
	}
}

type proposalResult struct {
	results []fsm.Result
	err     error
}

// NewProposer returns a proposer for r; call Run to start it.
func NewProposer(r *raft.Raft) *Proposer {
	return &Proposer{
		raft:     r,
		reqs:     make(chan *proposal, 4096),
		inflight: make(chan struct{}, 8),
		maxBatch: 1024,
		Timeout:  10 * time.Second,

		LaterDelay: 20 * time.Millisecond,
	}
}

// Later commits cmd with the next entry proposed, or alone after
// LaterDelay, and calls then (when not nil) with its result. It is for
// commands nobody waits for, whose commit can ride with others (a task's
// start): under load they cost no entry, hence no fsync, of their own.
// Commands given to Later keep their order, and are applied before the
// commands of any Propose called after Later returned.
func (p *Proposer) Later(cmd *gv1.Command, then func(fsm.Result, error)) {
	if then == nil {
		then = func(fsm.Result, error) {}
	}
	if p.Gate != nil {
		if err := p.Gate(cmd); err != nil {
			then(fsm.Result{}, err)
			return
		}
	}
	p.mu.Lock()
	p.later = append(p.later, &proposal{cmds: []*gv1.Command{cmd}, then: then})
	if p.laterTimer == nil {
		p.laterTimer = time.AfterFunc(p.LaterDelay, p.flushLater)
	}
	p.mu.Unlock()
}

// flushLater wakes Run to send the commands waiting in later: an empty
// proposal forms a batch of its own.
func (p *Proposer) flushLater() {
	select {
	case p.reqs <- &proposal{done: make(chan proposalResult, 1)}:
	default: // Run is busy: the next batch takes them
	}
}

// takeLater returns the commands waiting in later.
func (p *Proposer) takeLater() []*proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.later
	p.later = nil
	if p.laterTimer != nil {
		p.laterTimer.Stop()
		p.laterTimer = nil
	}
	return out
}

// Propose commits cmds (in order, possibly together with other callers'
// commands) and returns one result per command. An error means the outcome
// is unknown or nothing was committed; rule violations are in the results.
func (p *Proposer) Propose(ctx context.Context, cmds ...*gv1.Command) ([]fsm.Result, error) {
	return p.ProposeQueued(ctx, nil, cmds...)
}

// ProposeQueued is Propose, calling queued (when set) once cmds have their
// place in the log's order: any command proposed after that is applied
// after them. It is not called when nothing is proposed.
func (p *Proposer) ProposeQueued(ctx context.Context, queued func(), cmds ...*gv1.Command) ([]fsm.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if p.Gate != nil {
		for _, c := range cmds {
			if err := p.Gate(c); err != nil {
				return nil, err
			}
		}
	}
	pr := &proposal{cmds: cmds, done: make(chan proposalResult, 1)}
	select {
	case p.reqs <- pr:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if queued != nil {
		queued()
	}
	select {
	case res := <-pr.done:
		return res.results, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ProposeOne commits one command and returns its result's error folded in.
func (p *Proposer) ProposeOne(ctx context.Context, cmd *gv1.Command) (fsm.Result, error) {
	res, err := p.Propose(ctx, cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	return res[0], res[0].Err
}

// Run forms and sends batches until ctx ends.
func (p *Proposer) Run(ctx context.Context) {
	for {
		var first *proposal
		select {
		case <-ctx.Done():
			p.failQueued(ctx.Err())
			return
		case first = <-p.reqs:
		}
		select {
		case p.inflight <- struct{}{}:
		case <-ctx.Done():
			first.answer(proposalResult{err: ctx.Err()})
			p.failQueued(ctx.Err())
			return
		}
		// Take whatever queued while we waited for a free slot, then the
		// commands waiting to ride along, which go first.
		batch := []*proposal{first}
		n := len(first.cmds)
	fill:
		for n < p.maxBatch {
			select {
			case pr := <-p.reqs:
				batch = append(batch, pr)
				n += len(pr.cmds)
			default:
				break fill
			}
		}
		if later := p.takeLater(); len(later) > 0 {
			batch = append(later, batch...)
			n += len(later)
		}
		if n == 0 {
			// A wake-up for later commands another batch already took.
			<-p.inflight
			continue
		}
		p.send(batch, n)
	}
}

func (p *Proposer) send(batch []*proposal, n int) {
	b := &gv1.Batch{Commands: make([]*gv1.Command, 0, n)}
	for _, pr := range batch {
		b.Commands = append(b.Commands, pr.cmds...)
	}
	// proto.Marshal, not the faster vt.Marshal: it refuses a string that
	// is not UTF-8 (one made from a git message, a process's error), so
	// none reaches the log, and Apply may decode entries without checking.
	data, err := proto.Marshal(b)
	if err != nil {
		<-p.inflight
		for _, pr := range batch {
			pr.answer(proposalResult{err: fmt.Errorf("encode batch: %w", err)})
		}
		return
	}
	start := time.Now()
	f := p.raft.Apply(data, p.Timeout)
	go func() {
		defer func() { <-p.inflight }()
		err := p.wait(f)
		if p.Observe != nil && err == nil {
			p.Observe(n, time.Since(start))
		}
		if err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
				err = fmt.Errorf("%w: %v", ErrNotLeader, err)
			}
			for _, pr := range batch {
				pr.answer(proposalResult{err: fmt.Errorf("commit: %w", err)})
			}
			return
		}
		results, _ := f.Response().([]fsm.Result)
		if len(results) != n {
			for _, pr := range batch {
				pr.answer(proposalResult{err: fmt.Errorf("commit: %d results for %d commands", len(results), n)})
			}
			return
		}
		for _, pr := range batch {
			pr.answer(proposalResult{results: results[:len(pr.cmds):len(pr.cmds)]})
			results = results[len(pr.cmds):]
		}
	}()
}

// wait returns the future's error. A future can be left unanswered when Raft
// shuts down at the wrong moment, so the wait is bounded.
func (p *Proposer) wait(f raft.ApplyFuture) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	t := time.NewTimer(p.Timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w: no answer from raft within %s", ErrTimeout, p.Timeout)
	}
}

func (p *Proposer) failQueued(err error) {
	for _, pr := range p.takeLater() {
		pr.answer(proposalResult{err: err})
	}
	for {
		select {
		case pr := <-p.reqs:
			pr.answer(proposalResult{err: err})
		default:
			return
		}
	}
}
