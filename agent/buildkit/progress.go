package buildkit

import (
	"bytes"
	"fmt"
	"time"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// progress turns BuildKit's status stream into readable log lines, in the
// manner of `buildctl --progress=plain`: a step is numbered when it starts,
// its output lines carry its number, and its end says CACHED, DONE or ERROR.
type progress struct {
	out  Sink
	ids  map[digest.Digest]int
	done map[digest.Digest]bool
	// partial holds the unterminated tail of each step's output.
	partial map[digest.Digest][]byte
}

func newProgress(out Sink) *progress {
	return &progress{out: out, ids: map[digest.Digest]int{}, done: map[digest.Digest]bool{}, partial: map[digest.Digest][]byte{}}
}

// consume reads ch until it is closed.
func (p *progress) consume(ch <-chan *bkclient.SolveStatus) {
	for s := range ch {
		p.status(s)
	}
	for d, rest := range p.partial {
		if len(rest) > 0 {
			p.out.Write(gv1.LogStream_LOG_STREAM_STDOUT, fmt.Appendf(nil, "#%d %s\n", p.ids[d], rest))
		}
	}
}

func (p *progress) system(format string, args ...any) {
	p.out.Write(gv1.LogStream_LOG_STREAM_SYSTEM, fmt.Appendf(nil, format+"\n", args...))
}

func (p *progress) id(d digest.Digest, name string) int {
	if n, ok := p.ids[d]; ok {
		return n
	}
	n := len(p.ids) + 1
	p.ids[d] = n
	p.system("#%d %s", n, name)
	return n
}

func (p *progress) status(s *bkclient.SolveStatus) {
	for _, v := range s.Vertexes {
		if v.Started == nil && !v.Cached {
			continue
		}
		n := p.id(v.Digest, v.Name)
		if p.done[v.Digest] {
			continue
		}
		switch {
		case v.Error != "":
			p.done[v.Digest] = true
			p.system("#%d ERROR: %s", n, v.Error)
		case v.Cached:
			p.done[v.Digest] = true
			p.system("#%d CACHED", n)
		case v.Completed != nil:
			p.done[v.Digest] = true
			p.system("#%d DONE %s", n, v.Completed.Sub(*v.Started).Round(time.Millisecond))
		}
	}
	for _, l := range s.Logs {
		n, ok := p.ids[l.Vertex]
		if !ok {
			n = p.id(l.Vertex, "(output)")
		}
		stream := gv1.LogStream_LOG_STREAM_STDOUT
		if l.Stream == 2 {
			stream = gv1.LogStream_LOG_STREAM_STDERR
		}
		data := append(p.partial[l.Vertex], l.Data...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			p.out.Write(stream, fmt.Appendf(nil, "#%d %s\n", n, data[:i]))
			data = data[i+1:]
		}
		// A step printing without newlines is passed on in pieces, so
		// that what is held stays bounded.
		if len(data) >= limit.LogChunk {
			p.out.Write(stream, fmt.Appendf(nil, "#%d %s\n", n, data))
			data = nil
		}
		p.partial[l.Vertex] = bytes.Clone(data)
	}
	for _, w := range s.Warnings {
		p.system("WARNING: %s", w.Short)
	}
}
