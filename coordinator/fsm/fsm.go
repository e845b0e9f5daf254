// Package fsm is the coordinator's replicated state machine: jobs, their
// tasks and the leases on them. It applies Raft log entries (a Batch of
// Commands) deterministically: every time and identifier comes from the
// command, and applying reads no clock, draws no random numbers and does no
// I/O. A rule violation is returned as the command's result and changes
// nothing; an entry that cannot be decoded panics, since replicas would
// otherwise diverge.
package fsm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Result is the outcome of one command of a batch.
type Result struct {
	// JobID is the job the command touched (for a submit, the job created or
	// the existing one with the same idempotency key).
	JobID string
	// Existing is set on a submit whose idempotency key was seen before.
	Existing bool
	// Canceled lists the attempts a cancel took away from agents; the leader
	// tells those agents to stop.
	Canceled []*gv1.TaskRef
	// Build is the project build a trigger, start or approval touched.
	Build uint64
	// Pruned is how many jobs a prune forgot.
	Pruned int
	// Index is the log index of the entry the command was applied in.
	Index uint64
	Err   error
}

// TaskKey names a task of a job.
type TaskKey struct {
	JobID string
	Task  string
}

// FSM implements raft.FSM over the in-memory state.
type FSM struct {
	mu    sync.RWMutex
	state *state

	// changed is closed and replaced after every applied entry.
	changed chan struct{}
}

// New returns an empty state machine.
func New() *FSM {
	return &FSM{state: newState(), changed: make(chan struct{})}
}

var _ raft.FSM = (*FSM)(nil)

// Apply applies one log entry. It returns []Result, one per command.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	// The leader's proposer encoded the entry with proto.Marshal, which
	// refuses strings that are not UTF-8: the fast decoder, which does not
	// check them, is safe here.
	var b gv1.Batch
	if err := b.UnmarshalVT(l.Data); err != nil {
		panic(fmt.Sprintf("fsm: undecodable log entry %d: %v", l.Index, err))
	}
	// A command of a type this version does not know (a newer version
	// proposed it) cannot be applied as the newer replicas apply it:
	// skipping it would make this replica diverge. Stop instead, saying
	// so, before touching the state.
	for i, c := range b.Commands {
		if c.Cmd == nil && len(c.ProtoReflect().GetUnknown()) > 0 {
			panic(fmt.Sprintf("fsm: log entry %d, command %d: a command type this version of Gantry does not know (proposed by a newer coordinator); upgrade this coordinator: applying the log without it would diverge from the cluster", l.Index, i))
		}
	}
	f.mu.Lock()
	results := make([]Result, len(b.Commands))
	for i, c := range b.Commands {
		results[i] = f.state.apply(l.Index, c)
		results[i].Index = l.Index
	}
	f.state.applied = l.Index
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	close(ch)
	return results
}

// Changed returns a channel closed at the next applied entry.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// AppliedIndex is the index of the last applied entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.applied
}

// Job returns a copy of one job.
func (f *FSM) Job(id string) (*gv1.Job, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if sj, ok := f.state.sealed[id]; ok {
		return sj.decode(id), true
	}
	j, ok := f.state.jobs[id]
	if !ok {
		return nil, false
	}
	return j.CloneVT(), true
}

// JobVersion returns a job's version (the index of its last change) without
// copying it.
func (f *FSM) JobVersion(id string) (uint64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if sj, ok := f.state.sealed[id]; ok {
		return sj.version, true
	}
	j, ok := f.state.jobs[id]
	if !ok {
		return 0, false
	}
	return j.Version, true
}

// Jobs returns copies of the newest jobs first, at most limit of them, with
// only the given states (all when states is empty).
func (f *FSM) Jobs(states []gv1.JobState, limit int) []*gv1.Job {
	out, _, _ := f.JobsPage(states, limit, 0, gv1.JobView_JOB_VIEW_FULL)
	return out
}

// JobsPage is Jobs in a view (see JobIn), stopping before the jobs'
// encoded size passes maxBytes (zero: no bound); it also counts every job
// in states (total) and says whether the size stopped it short of limit.
func (f *FSM) JobsPage(states []gv1.JobState, limit, maxBytes int, view gv1.JobView) (out []*gv1.Job, total int, truncated bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	want := map[gv1.JobState]bool{}
	for _, s := range states {
		want[s] = true
	}
	// The total without a walk: ended jobs are counted by state as they
	// are sealed, the live ones are few.
	for st, n := range f.state.endedBy {
		if len(want) == 0 || want[st] {
			total += n
		}
	}
	for _, j := range f.state.jobs {
		if len(want) == 0 || want[j.State] {
			total++
		}
	}
	size, seen := 0, 0
	f.state.order.eachNewest(func(id string, _ []byte) bool {
		if seen == total || truncated || (limit > 0 && len(out) >= limit) {
			return false
		}
		j, live := f.state.jobs[id]
		sj := f.state.sealed[id]
		st := sj.state
		if live {
			st = j.State
		}
		if len(want) > 0 && !want[st] {
			return true
		}
		seen++
		// The basic view is copied before it is counted (its size is its
		// own); a whole job only once it fits.
		var c *gv1.Job
		if view == gv1.JobView_JOB_VIEW_BASIC {
			if live {
				c = basicJob(j)
			} else {
				c = dropSpecs(sj.decode(id))
			}
		}
		if maxBytes > 0 {
			n := len(sj.data)
			switch {
			case c != nil:
				n = proto.Size(c)
			case live:
				n = proto.Size(j)
			}
			if size += n + 8; size > maxBytes {
				truncated = true
				return true
			}
		}
		if c == nil {
			if live {
				c = j.CloneVT()
			} else {
				c = sj.decode(id)
			}
		}
		out = append(out, c)
		return true
	})
	return out, total, truncated
}

// ActiveTask is a task leased to an agent (assigned or running).
type ActiveTask struct {
	Ref     *gv1.TaskRef
	Agent   string
	State   gv1.TaskState
	Timeout int64 // nanoseconds; zero means none
}

// Active returns every leased task.
func (f *FSM) Active() []ActiveTask {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]ActiveTask, 0, len(f.state.active))
	for k := range f.state.active {
		t := f.state.task(f.state.jobs[k.JobID], k.Task)
		out = append(out, ActiveTask{
			Ref:     &gv1.TaskRef{JobId: k.JobID, Task: k.Task, Attempt: t.Attempt},
			Agent:   t.Agent,
			State:   t.State,
			Timeout: t.Spec.GetTimeout().AsDuration().Nanoseconds(),
		})
	}
	return out
}

// AgentLoad returns how many tasks each agent holds.
func (f *FSM) AgentLoad() map[string]int {
	load, _ := f.AgentLoadAt()
	return load
}

// AgentLoadAt is AgentLoad with the index of the last entry applied to it:
// an attempt that ended in a later entry is still counted.
func (f *FSM) AgentLoadAt() (map[string]int, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]int, len(f.state.load))
	for a, n := range f.state.load {
		out[a] = n
	}
	return out, f.state.applied
}

// BusyConcurrency returns the concurrency keys held by a leased task.
func (f *FSM) BusyConcurrency() map[string]bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]bool, len(f.state.busy))
	for k := range f.state.busy {
		out[k] = true
	}
	return out
}

// IsCurrent reports whether ref is the current, leased attempt of its task.
func (f *FSM) IsCurrent(ref *gv1.TaskRef) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k := TaskKey{ref.GetJobId(), ref.GetTask()}
	if _, ok := f.state.active[k]; !ok {
		return false
	}
	t := f.state.task(f.state.jobs[k.JobID], k.Task)
	return t.Attempt == ref.GetAttempt()
}

// KeyUsed reports whether a job was submitted with idempotency key k.
func (f *FSM) KeyUsed(k string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.state.byKey[k]
	return ok
}

// Settled reports whether a proposed assignment of ref no longer needs
// counting beside AgentLoad: its task has had attempt ref.Attempt assigned
// (AgentLoad counts it while it runs), or its job has ended (nothing of it
// holds a slot). An ended job is not decoded to tell which: the scheduler
// asks this for every reservation on each pass.
func (f *FSM) Settled(ref *gv1.TaskRef) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.state.jobEnded(ref) {
		return true
	}
	t := f.state.taskAt(ref)
	return t != nil && t.Attempt >= ref.GetAttempt()
}

// Holder returns the agent holding ref's task while the task is leased
// (assigned or running), whatever attempt ref names.
func (f *FSM) Holder(ref *gv1.TaskRef) (agent string, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k := TaskKey{ref.GetJobId(), ref.GetTask()}
	if _, ok := f.state.active[k]; !ok {
		return "", false
	}
	return f.state.task(f.state.jobs[k.JobID], k.Task).Agent, true
}

// AttemptEnded reports whether ref names an attempt that ended with a
// result (not a cancel); its agent may still be waiting for the
// acknowledgement of that result.
func (f *FSM) AttemptEnded(ref *gv1.TaskRef) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t := f.state.taskAt(ref)
	if t == nil {
		return false
	}
	for _, a := range t.Attempts {
		if a.Number == ref.GetAttempt() {
			return a.FinishedAt != nil && a.Result != gv1.TaskState_TASK_STATE_CANCELED
		}
	}
	return false
}

// Counts returns the number of jobs and of tasks in each state.
func (f *FSM) Counts() (jobs map[gv1.JobState]int, tasks map[gv1.TaskState]int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	jobs = map[gv1.JobState]int{}
	tasks = map[gv1.TaskState]int{}
	count := func(j *gv1.Job) {
		jobs[j.State]++
		for _, t := range j.Tasks {
			tasks[t.State]++
		}
	}
	for _, j := range f.state.jobs {
		count(j)
	}
	for id, sj := range f.state.sealed {
		count(sj.decode(id))
	}
	return jobs, tasks
}

// Snapshot captures the state for Raft: under the lock, the encodings of
// the ended jobs (kept encoded: no work) and of the rest; Persist writes
// them, concurrently with later Applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	e, err := f.encode()
	if err != nil {
		return nil, err
	}
	return &snapshot{enc: e}, nil
}

// Encode returns the whole state as an encoded gv1.Snapshot: what Raft
// snapshots hold and what `gantry snapshot save` writes.
func (f *FSM) Encode() ([]byte, error) {
	e, err := f.encode()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(e.size())
	if _, err := e.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encoded is the state's encoding in parts: each job's, in submit order
// (Snapshot.jobs, field 1), then the other fields (head). Written out
// they are the deterministic encoding of the whole gv1.Snapshot, which
// emits fields by number.
type encoded struct {
	order [][]orderEntry
	live  map[string][]byte // the encoding of each job not ended
	head  []byte
}

// each calls fn with each job's encoding in submit order until fn fails.
func (e *encoded) each(fn func(b []byte) error) error {
	for _, c := range e.order {
		for _, j := range c {
			b := j.data
			if b == nil {
				b = e.live[j.id]
			}
			if err := fn(b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *encoded) size() int {
	n := len(e.head)
	_ = e.each(func(b []byte) error {
		n += protowire.SizeTag(1) + protowire.SizeBytes(len(b))
		return nil
	})
	return n
}

// WriteTo writes the encoding to w.
func (e *encoded) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var hdr []byte
	err := e.each(func(j []byte) error {
		hdr = protowire.AppendTag(hdr[:0], 1, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(len(j)))
		for _, b := range [][]byte{hdr, j} {
			n, err := w.Write(b)
			total += int64(n)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return total, err
	}
	n, err := w.Write(e.head)
	return total + int64(n), err
}

func (f *FSM) encode() (*encoded, error) {
	det := proto.MarshalOptions{Deterministic: true}
	f.mu.RLock()
	defer f.mu.RUnlock()
	snap := &gv1.Snapshot{AppliedIndex: f.state.applied, Fence: f.state.fence}
	names := make([]string, 0, len(f.state.apps))
	for n := range f.state.apps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		snap.Apps = append(snap.Apps, f.state.apps[n])
	}
	snap.Secrets = f.state.sortedSecrets(false)
	snap.Tokens = f.state.sortedTokens(false)
	snap.Audit = f.state.audit
	snap.Projects = f.state.sortedProjects()
	snap.JoinTokens = f.state.sortedJoinTokens(false)
	snap.Enrollments = f.state.sortedEnrollments(false)
	if n := len(snap.Audit); n > limit.AuditEvents {
		snap.Audit = snap.Audit[n-limit.AuditEvents:]
	}
	head, err := det.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	// The ended jobs' encodings are shared with the order; the live
	// ones, which Apply goes on changing, are encoded now.
	e := &encoded{order: f.state.order.capture(), live: make(map[string][]byte, len(f.state.jobs)), head: head}
	for id, j := range f.state.jobs {
		if e.live[id], err = det.Marshal(j); err != nil {
			return nil, fmt.Errorf("encode job %s: %w", id, err)
		}
	}
	return e, nil
}

// Decode checks that data is a snapshot this version can restore.
func Decode(data []byte) (*gv1.Snapshot, error) {
	var snap gv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	for i, j := range snap.Jobs {
		if j.GetId() == "" {
			return nil, fmt.Errorf("decode snapshot: job %d has no id", i)
		}
	}
	for i, a := range snap.Apps {
		if a.GetSpec().GetName() == "" {
			return nil, fmt.Errorf("decode snapshot: application %d has no name", i)
		}
	}
	for i, sec := range snap.Secrets {
		if sec.GetName() == "" || len(sec.GetCiphertext()) == 0 {
			return nil, fmt.Errorf("decode snapshot: secret %d has no name or no value", i)
		}
	}
	for i, t := range snap.Tokens {
		if t.GetId() == "" || len(t.GetSecretSha256()) != 32 {
			return nil, fmt.Errorf("decode snapshot: token %d has no id or no hash", i)
		}
	}
	for i, p := range snap.Projects {
		if p.GetSpec().GetName() == "" {
			return nil, fmt.Errorf("decode snapshot: project %d has no name", i)
		}
	}
	for i, t := range snap.JoinTokens {
		if t.GetId() == "" || len(t.GetSecretSha256()) != 32 {
			return nil, fmt.Errorf("decode snapshot: join token %d has no id or no hash", i)
		}
	}
	for i, e := range snap.Enrollments {
		if e.GetAgent() == "" || e.GetSerial() == "" {
			return nil, fmt.Errorf("decode snapshot: enrollment %d has no agent or no serial", i)
		}
	}
	return &snap, nil
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	st := newState()
	// Jobs are read one by one: an ended one is kept as its bytes (what
	// Encode wrote for it) without being decoded; the rest of the
	// snapshot is decoded whole.
	var rest []byte
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("decode snapshot: %w", protowire.ParseError(n))
		}
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return fmt.Errorf("decode snapshot: job: %w", protowire.ParseError(m))
			}
			if err := st.restoreJob(v); err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
			b = b[n+m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return fmt.Errorf("decode snapshot: %w", protowire.ParseError(m))
		}
		rest = append(rest, b[:n+m]...)
		b = b[n+m:]
	}
	var snap gv1.Snapshot
	if err := proto.Unmarshal(rest, &snap); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	st.applied = snap.AppliedIndex
	st.fence = snap.Fence
	for _, a := range snap.Apps {
		st.apps[a.GetSpec().GetName()] = a
	}
	for _, sec := range snap.Secrets {
		st.secrets[sec.GetName()] = sec
	}
	for _, t := range snap.Tokens {
		st.tokens[t.GetId()] = t
	}
	st.audit = snap.Audit
	for _, p := range snap.Projects {
		st.projects[p.GetSpec().GetName()] = p
	}
	for _, t := range snap.JoinTokens {
		st.joinTokens[t.GetId()] = t
	}
	for _, e := range snap.Enrollments {
		st.enrollments[e.GetAgent()] = e
	}
	f.mu.Lock()
	f.state = st
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	close(ch)
	return nil
}

type snapshot struct{ enc *encoded }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	_, err := s.enc.WriteTo(w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
