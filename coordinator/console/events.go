package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// keepAlive is the longest silence on an event stream; a comment line keeps
// proxies from closing it.
const keepAlive = 15 * time.Second

// sse writes Server-Sent Events.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func newSSE(w http.ResponseWriter) (*sse, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Reconnect after 2 s when the stream breaks (coordinator restart).
	io.WriteString(w, "retry: 2000\n\n")
	f.Flush()
	return &sse{w: w, f: f}, true
}

// send writes one event; data must be a single line (JSON is).
func (s *sse) send(event string, data []byte) error {
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

func (s *sse) sendJSON(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(event, data)
}

func (s *sse) ping() error {
	if _, err := io.WriteString(s.w, ": ping\n\n"); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// overviewEvents streams the cluster, agents, queue, jobs and applications.
// Each is read every Interval and sent when it changed, as an event of that
// name; a failed read is sent as {"error": "...", "code": "14"}.
func (h *Handler) overviewEvents(w http.ResponseWriter, r *http.Request) {
	jobsReq, err := listJobsRequest(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s, ok := newSSE(w)
	if !ok {
		return
	}
	ctx := r.Context()
	sources := []struct {
		event string
		read  func(context.Context) (proto.Message, error)
	}{
		{"cluster", func(ctx context.Context) (proto.Message, error) {
			return h.client.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
		}},
		{"agents", func(ctx context.Context) (proto.Message, error) {
			return h.client.ListAgents(ctx, &gv1.ListAgentsRequest{})
		}},
		{"queue", func(ctx context.Context) (proto.Message, error) {
			return h.client.ListQueue(ctx, &gv1.ListQueueRequest{})
		}},
		{"jobs", func(ctx context.Context) (proto.Message, error) {
			return h.client.ListJobs(ctx, jobsReq)
		}},
		{"apps", func(ctx context.Context) (proto.Message, error) {
			return h.client.ListApps(ctx, &gv1.ListAppsRequest{})
		}},
	}
	// Each source is read on its own, so a slow one (ListQueue waits for the
	// leader during an election) does not hold the others back.
	events := make(chan polled)
	for _, src := range sources {
		go h.poll(ctx, src.event, src.read, events)
	}
	emit(ctx, s, events)
}

// appEvents streams one application (GetApp: spec, history, summary and
// drift) as "app" events, read every Interval and sent when it changed; a
// failed read is sent as {"error": "...", "code": "5"}.
func (h *Handler) appEvents(w http.ResponseWriter, r *http.Request) {
	s, ok := newSSE(w)
	if !ok {
		return
	}
	ctx := r.Context()
	name := r.PathValue("name")
	events := make(chan polled)
	go h.poll(ctx, "app", func(ctx context.Context) (proto.Message, error) {
		return h.client.GetApp(ctx, &gv1.GetAppRequest{Name: name})
	}, events)
	emit(ctx, s, events)
}

// polled is one read of a polled source, ready to send.
type polled struct {
	event string
	data  []byte
}

// poll reads a source every Interval until ctx ends and sends it to out
// whenever it changed; a failed read is sent as {"error", "code"}.
func (h *Handler) poll(ctx context.Context, event string, read func(context.Context) (proto.Message, error), out chan<- polled) {
	var last []byte
	tick := time.NewTicker(h.cfg.Interval)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, h.cfg.CallTimeout)
		m, err := read(cctx)
		cancel()
		var data []byte
		if err != nil {
			st := status.Convert(err)
			data, _ = json.Marshal(map[string]string{"error": st.Message(), "code": strconv.Itoa(int(st.Code()))})
		} else if data, err = marshal.Marshal(m); err != nil {
			data, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		if !bytes.Equal(data, last) {
			last = data
			select {
			case out <- polled{event, data}:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// emit sends polled events, with keep-alive comments, until ctx ends or
// the browser goes away.
func emit(ctx context.Context, s *sse, events <-chan polled) {
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if s.ping() != nil {
				return
			}
		case ev := <-events:
			if s.send(ev.event, ev.data) != nil {
				return
			}
		}
	}
}

// jobEvents relays WatchJob: a "job" event after every change, then "end"
// once the job is final. A failure is sent as a "failure" event.
func (h *Handler) jobEvents(w http.ResponseWriter, r *http.Request) {
	s, ok := newSSE(w)
	if !ok {
		return
	}
	ctx := r.Context()
	stream, err := h.client.WatchJob(ctx, &gv1.WatchJobRequest{JobId: r.PathValue("id")})
	if err != nil {
		s.sendJSON("failure", map[string]string{"error": status.Convert(err).Message()})
		return
	}
	relay(ctx, s, func() (string, []byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return "", nil, err
		}
		data, err := marshal.Marshal(m.GetJob())
		return "job", data, err
	})
}

// logLine is one log chunk as the console shows it.
type logLine struct {
	Task    string `json:"task"`
	Attempt int32  `json:"attempt"`
	Seq     uint64 `json:"seq"`
	Stream  string `json:"stream"`
	Text    string `json:"text"`
	At      string `json:"at,omitempty"`
	EOF     bool   `json:"eof,omitempty"`
}

var streamNames = map[gv1.LogStream]string{
	gv1.LogStream_LOG_STREAM_STDOUT: "stdout",
	gv1.LogStream_LOG_STREAM_STDERR: "stderr",
	gv1.LogStream_LOG_STREAM_SYSTEM: "system",
}

// logEvents relays TaskLogs with follow: the log so far, then live chunks
// as "log" events until the job is final ("end").
func (h *Handler) logEvents(w http.ResponseWriter, r *http.Request) {
	s, ok := newSSE(w)
	if !ok {
		return
	}
	ctx := r.Context()
	follow := r.URL.Query().Get("follow") != "0"
	stream, err := h.client.TaskLogs(ctx, &gv1.TaskLogsRequest{JobId: r.PathValue("id"), Task: r.URL.Query().Get("task"), Follow: follow})
	if err != nil {
		s.sendJSON("failure", map[string]string{"error": status.Convert(err).Message()})
		return
	}
	relay(ctx, s, func() (string, []byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return "", nil, err
		}
		c := m.GetChunk()
		l := logLine{
			Task: c.GetRef().GetTask(), Attempt: c.GetRef().GetAttempt(), Seq: c.GetSeq(),
			Stream: streamNames[c.GetStream()], Text: string(c.GetData()), EOF: c.GetEof(),
		}
		if c.GetAt() != nil {
			l.At = c.GetAt().AsTime().Format(time.RFC3339Nano)
		}
		data, err := json.Marshal(l)
		return "log", data, err
	})
}

// relay sends what next returns until it fails: io.EOF ends the stream with
// an "end" event, any other error with a "failure" event. Keep-alive
// comments are sent while next blocks.
func relay(ctx context.Context, s *sse, next func() (string, []byte, error)) {
	type item struct {
		event string
		data  []byte
		err   error
	}
	items := make(chan item)
	go func() {
		for {
			ev, data, err := next()
			select {
			case items <- item{ev, data, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if s.ping() != nil {
				return
			}
		case it := <-items:
			switch {
			case errors.Is(it.err, io.EOF):
				s.send("end", []byte("{}"))
				return
			case it.err != nil:
				if ctx.Err() == nil {
					s.sendJSON("failure", map[string]string{"error": status.Convert(it.err).Message(), "code": strconv.Itoa(int(status.Code(it.err)))})
				}
				return
			}
			if s.send(it.event, it.data) != nil {
				return
			}
		}
	}
}
