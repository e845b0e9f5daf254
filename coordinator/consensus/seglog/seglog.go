// Package seglog is a Raft log store of append-only segment files: a
// batch of entries is one write and one fdatasync, where a B+tree store
// (raft-boltdb) pays two syncs and page rewrites per batch. Removing the
// head (compaction) deletes whole files; removing the tail (a deposed
// leader's uncommitted entries) truncates one file and deletes later ones.
//
// A segment is named by the index of its first entry (%020d.seg) and holds
// consecutive entries, each framed as
//
//	u32 length of the body | u32 CRC-32C of the body | body
//	body: u64 index | u64 term | u8 type | i64 appended-at (unix ns) |
//	      u32 len | data | u32 len | extensions
//
// little-endian. Opening reads every segment: a torn frame at the end of
// the last one (a crash during a write) is cut off; anything else that does
// not read back is an error.
package seglog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// DefaultSegmentSize is the size past which a new segment is started.
const DefaultSegmentSize = 64 << 20

// maxEntry bounds one entry's body when reading (a corrupt length must not
// allocate gigabytes).
const maxEntry = 256 << 20

const (
	frameHeader = 8
	bodyFixed   = 8 + 8 + 1 + 8 + 4 + 4
	suffix      = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	first uint64 // index of its first entry (its name)
	f     *os.File
	offs  []int64 // offs[i]: offset of entry first+i
	size  int64
}

func (s *segment) last() uint64 { return s.first + uint64(len(s.offs)) - 1 }

// Store is a raft.LogStore. Raft writes from one goroutine and reads from
// several; reads never wait for a write's sync.
type Store struct {
	dir     string
	segSize int64

	wmu sync.Mutex // one writer (StoreLogs, DeleteRange) at a time

	mu          sync.RWMutex // the fields below
	segs        []*segment
	first, last uint64 // 0, 0: empty
	closed      bool
}

// Open opens (creating it if needed) the store in dir.
func Open(dir string) (*Store, error) {
	return OpenSize(dir, DefaultSegmentSize)
}

// OpenSize is Open with segments of about segSize bytes.
func OpenSize(dir string, segSize int64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, segSize: segSize}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, e := range names {
		n, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(n, 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("seglog: %s: not a segment name", e.Name())
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	for i, first := range firsts {
		seg, err := s.load(first, i == len(firsts)-1)
		if err != nil {
			s.Close()
			return nil, err
		}
		if n := len(s.segs); n > 0 && s.segs[n-1].first+uint64(len(s.segs[n-1].offs)) != first {
			seg.f.Close()
			s.Close()
			return nil, fmt.Errorf("seglog: segment %d does not follow segment %d (%d entries)", first, s.segs[n-1].first, len(s.segs[n-1].offs))
		}
		s.segs = append(s.segs, seg)
	}
	// Empty segments hold no index: the store's bounds come from the others.
	for _, seg := range s.segs {
		if len(seg.offs) > 0 {
			if s.first == 0 {
				s.first = seg.first
			}
			s.last = seg.last()
		}
	}
	// A head delete inside the first segment is recorded in headFile.
	if b, err := os.ReadFile(filepath.Join(dir, headFile)); err == nil {
		head, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("seglog: %s: %v", headFile, err)
		}
		if s.first != 0 && head > s.first && head <= s.last {
			s.first = head
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		s.Close()
		return nil, err
	}
	return s, nil
}

// headFile holds the first index when entries before it remain in the
// first segment (deleted, but sharing a file with live ones).
const headFile = "first"

// writeHead records s.first in headFile (mu held).
func (s *Store) writeHead() error {
	tmp := filepath.Join(s.dir, headFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(s.first, 10)+"\n"), 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, headFile)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// load reads segment first; in the last segment a torn or corrupt tail is
// cut off.
func (s *Store) load(first uint64, tail bool) (*segment, error) {
	path := s.path(first)
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	seg := &segment{first: first, f: f}
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [frameHeader]byte
	var body []byte
	for {
		_, err := io.ReadFull(r, hdr[:])
		if err == io.EOF {
			break
		}
		n := binary.LittleEndian.Uint32(hdr[0:])
		if err == nil && (n < bodyFixed || n > maxEntry) {
			err = fmt.Errorf("entry length %d", n)
		}
		if err == nil {
			body = slices.Grow(body[:0], int(n))[:n]
			_, err = io.ReadFull(r, body)
		}
		if err == nil && crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			err = errors.New("checksum mismatch")
		}
		if err == nil {
			if idx := binary.LittleEndian.Uint64(body); idx != first+uint64(len(seg.offs)) {
				err = fmt.Errorf("entry %d where %d belongs", idx, first+uint64(len(seg.offs)))
			}
		}
		if err != nil {
			if !tail {
				f.Close()
				return nil, fmt.Errorf("seglog: %s at offset %d: %v", path, seg.size, err)
			}
			// A write cut short by a crash: what follows was never
			// acknowledged (StoreLogs returns after the sync).
			if err := f.Truncate(seg.size); err != nil {
				f.Close()
				return nil, err
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				f.Close()
				return nil, err
			}
			break
		}
		seg.offs = append(seg.offs, seg.size)
		seg.size += frameHeader + int64(n)
	}
	return seg, nil
}

func (s *Store) path(first uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", first, suffix))
}

// FirstIndex returns the first index written, 0 for none.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.first, nil
}

// LastIndex returns the last index written, 0 for none.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last, nil
}

// GetLog reads the entry at index into log.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	// Held through the read: DeleteRange closes segments under the write
	// lock, and a write publishes its entries only after its sync.
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errors.New("seglog: closed")
	}
	if s.first == 0 || index < s.first || index > s.last {
		return raft.ErrLogNotFound
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > index }) - 1
	seg := s.segs[i]
	off := seg.offs[index-seg.first]
	end := seg.size
	if k := index - seg.first + 1; k < uint64(len(seg.offs)) {
		end = seg.offs[k]
	}
	buf := make([]byte, end-off)
	if _, err := seg.f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("seglog: read entry %d: %w", index, err)
	}
	return decode(buf, index, log)
}

func decode(frame []byte, index uint64, log *raft.Log) error {
	if len(frame) < frameHeader+bodyFixed {
		return fmt.Errorf("seglog: entry %d: short frame", index)
	}
	n := binary.LittleEndian.Uint32(frame)
	body := frame[frameHeader:]
	if int(n) != len(body) || crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(frame[4:]) {
		return fmt.Errorf("seglog: entry %d: checksum mismatch", index)
	}
	log.Index = binary.LittleEndian.Uint64(body[0:])
	log.Term = binary.LittleEndian.Uint64(body[8:])
	log.Type = raft.LogType(body[16])
	if at := int64(binary.LittleEndian.Uint64(body[17:])); at != 0 {
		log.AppendedAt = time.Unix(0, at)
	} else {
		log.AppendedAt = time.Time{}
	}
	rest := body[25:]
	data, rest, err := field(rest)
	if err != nil {
		return fmt.Errorf("seglog: entry %d data: %w", index, err)
	}
	ext, _, err := field(rest)
	if err != nil {
		return fmt.Errorf("seglog: entry %d extensions: %w", index, err)
	}
	log.Data, log.Extensions = data, ext
	if log.Index != index {
		return fmt.Errorf("seglog: entry %d holds index %d", index, log.Index)
	}
	return nil
}

func field(b []byte) (v, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("short")
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, errors.New("length past the entry")
	}
	if n == 0 {
		return nil, b[4:], nil
	}
	return b[4 : 4+n], b[4+n:], nil
}

func appendFrame(buf []byte, l *raft.Log) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeader)...)
	buf = binary.LittleEndian.AppendUint64(buf, l.Index)
	buf = binary.LittleEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	buf = binary.LittleEndian.AppendUint64(buf, uint64(at))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	body := buf[start+frameHeader:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf
}

// StoreLog appends one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs appends entries with one write and one sync. They must follow
// each other, and the last entry stored, with one exception: Raft skips
// indices past a snapshot a user restores (raft.Restore), which covers
// every entry before it, so entries past a gap replace the whole log.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	closed, first, last := s.closed, s.first, s.last
	s.mu.RUnlock()
	if closed {
		return errors.New("seglog: closed")
	}
	if first != 0 && logs[0].Index > last+1 {
		if err := s.deleteRange(first, last); err != nil {
			return err
		}
		last = 0
	}
	empty := last == 0
	for i, l := range logs {
		want := last + 1 + uint64(i)
		if empty {
			want = logs[0].Index + uint64(i)
		}
		if l.Index != want || l.Index == 0 {
			return fmt.Errorf("seglog: entry %d where %d belongs", l.Index, want)
		}
		if len(l.Data) > maxEntry/2 || len(l.Extensions) > maxEntry/2 {
			return fmt.Errorf("seglog: entry %d: %d bytes, too large", l.Index, len(l.Data)+len(l.Extensions))
		}
	}
	seg, err := s.tail(logs[0].Index)
	if err != nil {
		return err
	}
	var buf []byte
	offs := make([]int64, len(logs))
	for i, l := range logs {
		offs[i] = seg.size + int64(len(buf))
		buf = appendFrame(buf, l)
	}
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		return fmt.Errorf("seglog: write: %w", err)
	}
	if err := unix.Fdatasync(int(seg.f.Fd())); err != nil {
		return fmt.Errorf("seglog: sync: %w", err)
	}
	s.mu.Lock()
	seg.offs = append(seg.offs, offs...)
	seg.size += int64(len(buf))
	if s.first == 0 {
		s.first = logs[0].Index
	}
	s.last = logs[len(logs)-1].Index
	s.mu.Unlock()
	return nil
}

// tail returns the segment to append index to, starting a new one when
// there is none or the last is full. Called with wmu held.
func (s *Store) tail(index uint64) (*segment, error) {
	s.mu.RLock()
	var seg *segment
	if n := len(s.segs); n > 0 {
		seg = s.segs[n-1]
	}
	s.mu.RUnlock()
	if seg != nil && seg.size < s.segSize && seg.first+uint64(len(seg.offs)) == index {
		return seg, nil
	}
	if seg != nil && len(seg.offs) == 0 {
		// An empty segment left for another index (the store emptied):
		// segments must follow each other.
		s.mu.Lock()
		s.segs = s.segs[:len(s.segs)-1]
		s.mu.Unlock()
		seg.f.Close()
		if err := os.Remove(s.path(seg.first)); err != nil {
			return nil, fmt.Errorf("seglog: remove empty segment: %w", err)
		}
	}
	f, err := os.OpenFile(s.path(index), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("seglog: new segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return nil, err
	}
	seg = &segment{first: index, f: f}
	s.mu.Lock()
	s.segs = append(s.segs, seg)
	s.mu.Unlock()
	return seg, nil
}

// DeleteRange removes entries min through max, which must be a head of
// the log (compaction) or a tail (a conflicting suffix), or all of it.
func (s *Store) DeleteRange(min, max uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.deleteRange(min, max)
}

// deleteRange is DeleteRange with wmu held.
func (s *Store) deleteRange(min, max uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("seglog: closed")
	}
	if s.first == 0 || max < s.first || min > s.last || min > max {
		return nil
	}
	var drop []*segment
	switch {
	case min <= s.first && max >= s.last:
		drop, s.segs = s.segs, nil
		s.first, s.last = 0, 0
		if err := os.Remove(filepath.Join(s.dir, headFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	case min <= s.first:
		// Whole segments before max+1 go; the one holding max+1 stays.
		keep := 0
		for keep < len(s.segs)-1 && s.segs[keep+1].first <= max+1 {
			keep++
		}
		drop, s.segs = s.segs[:keep], s.segs[keep:]
		s.first = max + 1
		if s.segs[0].first < s.first {
			if err := s.writeHead(); err != nil {
				return fmt.Errorf("seglog: record the first index: %w", err)
			}
		}
	case max >= s.last:
		// Segments from min on go, but the one holding min is cut.
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > min }) - 1
		seg := s.segs[i]
		if seg.first == min && i > 0 {
			i--
			seg = s.segs[i]
			drop = s.segs[i+1:]
		} else {
			drop = s.segs[i+1:]
			cut := seg.offs[min-seg.first]
			if err := seg.f.Truncate(cut); err != nil {
				return fmt.Errorf("seglog: truncate: %w", err)
			}
			if err := unix.Fdatasync(int(seg.f.Fd())); err != nil {
				return fmt.Errorf("seglog: sync: %w", err)
			}
			seg.offs, seg.size = seg.offs[:min-seg.first], cut
		}
		s.segs = s.segs[:i+1]
		s.last = min - 1
	default:
		return fmt.Errorf("seglog: delete %d-%d from the middle of %d-%d", min, max, s.first, s.last)
	}
	for _, seg := range drop {
		seg.f.Close()
		if err := os.Remove(s.path(seg.first)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("seglog: remove segment: %w", err)
		}
	}
	if len(drop) > 0 {
		return syncDir(s.dir)
	}
	return nil
}

// Close closes the segment files.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, seg := range s.segs {
		if err := seg.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("seglog: sync %s: %w", dir, err)
	}
	return nil
}

var _ raft.LogStore = (*Store)(nil)
