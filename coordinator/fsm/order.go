package fsm

import (
	"cmp"
	"slices"
)

// orderChunkLen is how many jobs a chunk of the submit order holds.
const orderChunkLen = 1024

// jobOrder is every job in submit order, with each ended job's encoding
// beside its ID. It is kept in chunks that a snapshot shares instead of
// copying: taking one (capture) costs a slice header per chunk, not a map
// lookup per job, so Raft's call to FSM.Snapshot, during which nothing is
// applied, does not grow with the jobs retained (it took 613 ms with a
// million ended jobs when the snapshot walked the order and looked up
// each). A chunk a snapshot holds is copied before an entry in it changes;
// appending past what the snapshot holds changes nothing it reads.
type jobOrder struct {
	chunks []*orderChunk
	// live locates each job that has not ended, for seal, with its rank
	// in the order (liveInOrder).
	live map[string]orderPos
	next uint64 // the rank of the next job pushed
}

type orderEntry struct {
	id   string
	data []byte // the ended job's encoding; nil while it is live
}

type orderChunk struct {
	e      []orderEntry
	shared bool // a snapshot holds e
}

type orderPos struct {
	c    *orderChunk
	i    int
	rank uint64
}

func newJobOrder() *jobOrder { return &jobOrder{live: map[string]orderPos{}} }

// push appends a job: data is its encoding if it has ended, nil if not.
func (o *jobOrder) push(id string, data []byte) {
	var c *orderChunk
	if k := len(o.chunks); k > 0 && len(o.chunks[k-1].e) < orderChunkLen {
		c = o.chunks[k-1]
	} else {
		c = &orderChunk{e: make([]orderEntry, 0, orderChunkLen)}
		o.chunks = append(o.chunks, c)
	}
	c.e = append(c.e, orderEntry{id: id, data: data})
	if data == nil {
		o.live[id] = orderPos{c: c, i: len(c.e) - 1, rank: o.next}
	}
	o.next++
}

// seal records that the live job id has ended, encoded as data.
func (o *jobOrder) seal(id string, data []byte) {
	p, ok := o.live[id]
	if !ok {
		return
	}
	delete(o.live, id)
	if p.c.shared {
		p.c.e = slices.Clone(p.c.e)
		p.c.shared = false
	}
	p.c.e[p.i].data = data
}

// liveInOrder returns the jobs that have not ended, in submit order, in
// time proportional to their number.
func (o *jobOrder) liveInOrder() []string {
	type ranked struct {
		rank uint64
		id   string
	}
	rs := make([]ranked, 0, len(o.live))
	for id, p := range o.live {
		rs = append(rs, ranked{p.rank, id})
	}
	slices.SortFunc(rs, func(a, b ranked) int { return cmp.Compare(a.rank, b.rank) })
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.id
	}
	return ids
}

// eachNewest calls fn with every job, the last submitted first, until fn
// returns false.
func (o *jobOrder) eachNewest(fn func(id string, data []byte) bool) {
	for k := len(o.chunks) - 1; k >= 0; k-- {
		e := o.chunks[k].e
		for i := len(e) - 1; i >= 0; i-- {
			if !fn(e[i].id, e[i].data) {
				return
			}
		}
	}
}

// keep rebuilds the order with the jobs keep returns true for. Chunks a
// snapshot holds are left as they are.
func (o *jobOrder) keep(keep func(id string, data []byte) bool) {
	old := o.chunks
	*o = jobOrder{live: make(map[string]orderPos, len(o.live))}
	for _, c := range old {
		for _, e := range c.e {
			if keep(e.id, e.data) {
				o.push(e.id, e.data)
			}
		}
	}
}

// capture returns the order as it is now, shared with o until o changes
// it (then o copies first).
func (o *jobOrder) capture() [][]orderEntry {
	out := make([][]orderEntry, len(o.chunks))
	for k, c := range o.chunks {
		c.shared = true
		out[k] = c.e
	}
	return out
}
