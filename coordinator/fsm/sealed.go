package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// sealedJob is an ended job, kept as its deterministic encoding. An ended
// job never changes again (a command naming it refuses or changes
// nothing), so the state holds it at the size of its encoding (a few
// hundred bytes for a short job, where the decoded job takes several
// kilobytes), a snapshot copies its bytes without encoding it again, and
// a restore keeps them without decoding them. What lists and retention
// need without decoding is kept beside it.
type sealedJob struct {
	data     []byte
	state    gv1.JobState
	finished int64 // unix nanoseconds; 0 when the job has none
	version  uint64
	key      string // idempotency key, for pruning without decoding
}

func (sj sealedJob) decode(id string) *gv1.Job {
	var j gv1.Job
	// The state encoded these bytes itself (or read them from a snapshot
	// it wrote), from jobs whose strings were checked on their way into
	// the log: decoded without checking them again.
	if err := j.UnmarshalVT(sj.data); err != nil {
		panic(fmt.Sprintf("fsm: sealed job %s does not decode: %v", id, err))
	}
	return &j
}

// job returns a job: one that has not ended as it is in the state, an
// ended one decoded (a copy, not to be changed).
func (s *state) job(id string) (*gv1.Job, bool) {
	if j, ok := s.jobs[id]; ok {
		return j, true
	}
	if sj, ok := s.sealed[id]; ok {
		return sj.decode(id), true
	}
	return nil, false
}

// taskAt returns ref's task (an ended job's decoded), nil when there is
// none.
func (s *state) taskAt(ref *gv1.TaskRef) *gv1.Task {
	j, ok := s.job(ref.GetJobId())
	if !ok {
		return nil
	}
	return s.task(j, ref.GetTask())
}

// jobEnded reports whether ref's job has ended (is sealed), without decoding
// it: what assign and start need to refuse.
func (s *state) jobEnded(ref *gv1.TaskRef) bool {
	_, ok := s.sealed[ref.GetJobId()]
	return ok
}

func (s *state) hasJob(id string) bool {
	if _, ok := s.jobs[id]; ok {
		return true
	}
	_, ok := s.sealed[id]
	return ok
}

// sealEnded seals the jobs that ended in the command just applied.
func (s *state) sealEnded() {
	for i, j := range s.ended {
		if s.jobs[j.Id] == j && JobFinal(j.State) {
			s.seal(j)
		}
		s.ended[i] = nil
	}
	s.ended = s.ended[:0]
}

// seal replaces an ended job by its encoding. Its tasks have ended, so no
// queue or lease index holds them.
func (s *state) seal(j *gv1.Job) {
	data, err := encodeEnded(j)
	if err != nil {
		panic(fmt.Sprintf("fsm: encode ended job %s: %v", j.Id, err))
	}
	sj := sealedJob{data: data, state: j.State, version: j.Version, key: j.IdempotencyKey}
	if j.FinishedAt != nil {
		sj.finished = j.FinishedAt.AsTime().UnixNano()
	}
	delete(s.jobs, j.Id)
	s.sealed[j.Id] = sj
	s.endedBy[sj.state]++
	s.noteEnd(sj.finished)
	s.order.seal(j.Id, data)
}

// encodeEnded returns the deterministic encoding of an ended job: sealed
// jobs are copied into snapshots as they are, and every replica's snapshot
// of one state is the same bytes (gantry inspect's state digest compares
// them). The generated encoder (MarshalVT) writes fields in the order the
// deterministic encoder does, but a map's entries in the map's iteration
// order: it is used for jobs whose maps have at most one entry each (most
// jobs: a label, a variable), which it encodes four times faster.
func encodeEnded(j *gv1.Job) ([]byte, error) {
	if plainMaps(j) {
		return j.MarshalVT()
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(j)
}

// plainMaps reports whether no map in j has more than one entry.
// TestPlainMapsSeesEveryMap keeps it to every map field a job holds.
func plainMaps(j *gv1.Job) bool {
	for _, t := range j.GetSpec().GetTasks() {
		if !plainSpecMaps(t) {
			return false
		}
	}
	for _, t := range j.GetTasks() {
		if len(t.GetOutputs()) > 1 || !plainSpecMaps(t.GetSpec()) {
			return false
		}
	}
	return true
}

func plainSpecMaps(t *gv1.TaskSpec) bool {
	if len(t.GetLabels()) > 1 {
		return false
	}
	switch x := t.GetExecutor().(type) {
	case *gv1.TaskSpec_Exec:
		return len(x.Exec.GetEnv()) <= 1 && len(x.Exec.GetSecretEnv()) <= 1
	case *gv1.TaskSpec_Run:
		return len(x.Run.GetEnv()) <= 1 && len(x.Run.GetSecretEnv()) <= 1 && len(x.Run.GetRegistryAuth()) <= 1
	case *gv1.TaskSpec_Build:
		return len(x.Build.GetArgs()) <= 1 && len(x.Build.GetSecrets()) <= 1 && len(x.Build.GetRegistryAuth()) <= 1
	case *gv1.TaskSpec_Deploy:
		return len(x.Deploy.GetImages()) <= 1
	}
	return true
}

// noteEnd keeps oldestEnd the earliest end of a sealed job.
func (s *state) noteEnd(finished int64) {
	if finished != 0 && (s.oldestEnd == 0 || finished < s.oldestEnd) {
		s.oldestEnd = finished
	}
}

// restoreJob adds a job read from a snapshot: an ended one sealed as
// encoded there, the others decoded.
func (s *state) restoreJob(b []byte) error {
	h, err := readJobHeader(b)
	if err != nil {
		return err
	}
	if h.id == "" {
		return errors.New("a job without id")
	}
	if !JobFinal(h.sealed.state) {
		var j gv1.Job
		if err := proto.Unmarshal(b, &j); err != nil {
			return fmt.Errorf("job %s: %w", h.id, err)
		}
		fillRunnable(&j)
		s.insert(&j)
		return nil
	}
	h.sealed.data = bytes.Clone(b)
	s.sealed[h.id] = h.sealed
	s.endedBy[h.sealed.state]++
	s.noteEnd(h.sealed.finished)
	s.order.push(h.id, h.sealed.data)
	if h.sealed.key != "" {
		s.byKey[h.sealed.key] = h.id
	}
	return nil
}

type jobHeader struct {
	id     string
	sealed sealedJob
}

// readJobHeader reads what the state indexes of an encoded gv1.Job: id (1),
// state (3), idempotency_key (4), finished_at (6) and version (8).
func readJobHeader(b []byte) (jobHeader, error) {
	var h jobHeader
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, protowire.ParseError(n)
		}
		b = b[n:]
		var m int
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, m = protowire.ConsumeBytes(b)
			h.id = string(v)
		case num == 4 && typ == protowire.BytesType:
			var v []byte
			v, m = protowire.ConsumeBytes(b)
			h.sealed.key = string(v)
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, m = protowire.ConsumeVarint(b)
			h.sealed.state = gv1.JobState(int32(v))
		case num == 8 && typ == protowire.VarintType:
			h.sealed.version, m = protowire.ConsumeVarint(b)
		case num == 6 && typ == protowire.BytesType:
			var v []byte
			v, m = protowire.ConsumeBytes(b)
			if m >= 0 {
				var ts timestamppb.Timestamp
				if err := proto.Unmarshal(v, &ts); err != nil {
					return h, fmt.Errorf("job finished_at: %w", err)
				}
				h.sealed.finished = ts.AsTime().UnixNano()
			}
		default:
			m = protowire.ConsumeFieldValue(num, typ, b)
		}
		if m < 0 {
			return h, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return h, nil
}
