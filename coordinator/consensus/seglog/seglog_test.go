package seglog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func entry(i, term uint64) *raft.Log {
	return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("data-%d-%d", i, term)),
		AppendedAt: time.Unix(0, int64(i)*1000)}
}

func appendRange(t *testing.T, s *Store, from, to, term uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, entry(i, term))
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("store %d-%d: %v", from, to, err)
	}
}

// check asserts the store holds exactly first..last, entry i of term
// terms[i].
func check(t *testing.T, s *Store, first, last uint64, terms map[uint64]uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("bounds %d-%d, want %d-%d", f, l, first, last)
	}
	if first == 0 {
		return
	}
	for i := first; i <= last; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		want := entry(i, terms[i])
		if got.Index != i || got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("entry %d: got %+v, want %+v", i, got, want)
		}
	}
	var got raft.Log
	if err := s.GetLog(last+1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("get %d past the end: %v", last+1, err)
	}
	if first > 1 {
		if err := s.GetLog(first-1, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("get %d before the start: %v", first-1, err)
		}
	}
}

func reopen(t *testing.T, s *Store, dir string, size int64) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSize(dir, size)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A deposed leader's uncommitted tail is cut and rewritten with another
// term; the store reopens with the new entries (the case a segment store
// must not lose across a restart).
func TestTailReplacedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSize(dir, 200)
	if err != nil {
		t.Fatal(err)
	}
	terms := map[uint64]uint64{}
	appendRange(t, s, 1, 30, 1)
	for i := uint64(1); i <= 30; i++ {
		terms[i] = 1
	}
	if err := s.DeleteRange(17, 30); err != nil {
		t.Fatal(err)
	}
	appendRange(t, s, 17, 40, 2)
	for i := uint64(17); i <= 40; i++ {
		terms[i] = 2
	}
	check(t, s, 1, 40, terms)
	s = reopen(t, s, dir, 200)
	check(t, s, 1, 40, terms)
	appendRange(t, s, 41, 45, 2)
	terms[41], terms[42], terms[43], terms[44], terms[45] = 2, 2, 2, 2, 2
	check(t, s, 1, 45, terms)
}

// A write cut short by a crash leaves a torn frame: reopening drops it and
// keeps every entry before.
func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, s, 1, 10, 1)
	s.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%020d%s", 1, suffix))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame := appendFrame(nil, entry(11, 1))
	f.Write(frame[:len(frame)-3])
	f.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("open after a torn write: %v", err)
	}
	defer s.Close()
	terms := map[uint64]uint64{}
	for i := uint64(1); i <= 11; i++ {
		terms[i] = 1
	}
	check(t, s, 1, 10, terms)
	appendRange(t, s, 11, 11, 1)
	check(t, s, 1, 11, terms)
}

// A corrupt entry in a segment that is not the last is an error, not a
// silently shorter log.
func TestCorruptSealedSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSize(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		appendRange(t, s, i, i, 1)
	}
	s.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%020d%s", 1, suffix))
	data, _ := os.ReadFile(seg)
	data[frameHeader+3] ^= 0xff
	os.WriteFile(seg, data, 0o600)
	if s, err := OpenSize(dir, 100); err == nil {
		s.Close()
		t.Fatal("a corrupt sealed segment opened")
	}
}

func TestRefusesMiddleDeletesAndGapsInABatch(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendRange(t, s, 5, 9, 1)
	if err := s.DeleteRange(6, 7); err == nil {
		t.Fatal("a middle delete was done")
	}
	if err := s.StoreLogs([]*raft.Log{entry(10, 1), entry(12, 1)}); err == nil {
		t.Fatal("a batch with a gap was stored")
	}
}

// Raft skips indices after restoring a user's snapshot: entries past the
// gap replace the log, which the snapshot covers.
func TestEntriesPastAGapReplaceTheLog(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSize(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, s, 1, 9, 1)
	appendRange(t, s, 20, 25, 2)
	terms := map[uint64]uint64{20: 2, 21: 2, 22: 2, 23: 2, 24: 2, 25: 2}
	check(t, s, 20, 25, terms)
	s = reopen(t, s, dir, 100)
	check(t, s, 20, 25, terms)
}

// Random appends, head and tail deletes, deletes of everything (a
// snapshot installed) and restarts, against a model.
func TestRandomAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			dir := t.TempDir()
			size := int64(64 + rng.IntN(2000))
			s, err := OpenSize(dir, size)
			if err != nil {
				t.Fatal(err)
			}
			terms := map[uint64]uint64{}
			var first, last, term uint64 = 0, 0, 1
			for step := 0; step < 300; step++ {
				switch op := rng.IntN(20); {
				case op < 12 || first == 0:
					from := last + 1
					if first == 0 {
						from = uint64(1 + rng.IntN(1000))
						first = from
					}
					to := from + uint64(rng.IntN(8))
					appendRange(t, s, from, to, term)
					for i := from; i <= to; i++ {
						terms[i] = term
					}
					last = to
				case op < 15:
					max := first + uint64(rng.IntN(int(last-first+1)))
					if err := s.DeleteRange(first, max); err != nil {
						t.Fatal(err)
					}
					if max >= last {
						first, last = 0, 0
					} else {
						first = max + 1
					}
				case op < 18:
					min := first + uint64(rng.IntN(int(last-first+1)))
					if err := s.DeleteRange(min, last); err != nil {
						t.Fatal(err)
					}
					term++
					if min == first {
						first, last = 0, 0
					} else {
						last = min - 1
					}
				default:
					s = reopen(t, s, dir, size)
				}
				check(t, s, first, last, terms)
			}
			s.Close()
		})
	}
}
