package forge

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
)

// request is what a fake forge received.
type request struct {
	Method string
	Target string // escaped path and raw query
	Header http.Header
	Body   string
}

// reply is what a fake forge answers to one request.
type reply struct {
	status int
	body   string
}

// fakeForge answers requests from a fixed table keyed "METHOD target",
// the target being the escaped path and the query, and records them.
type fakeForge struct {
	t      *testing.T
	routes map[string]reply
	url    string

	mu  sync.Mutex
	got []request
}

func newFake(t *testing.T, routes map[string]reply) *fakeForge {
	t.Helper()
	f := &fakeForge{t: t, routes: routes}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeForge) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	target := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	f.mu.Lock()
	f.got = append(f.got, request{Method: r.Method, Target: target, Header: r.Header.Clone(), Body: string(body)})
	f.mu.Unlock()
	rep, ok := f.routes[r.Method+" "+target]
	if !ok {
		f.t.Errorf("fake forge: unexpected %s %s", r.Method, target)
		rep = reply{http.StatusTeapot, `{"message":"no such route"}`}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

// requests returns what was received so far and forgets it.
func (f *fakeForge) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := f.got
	f.got = nil
	return got
}

// last is the one request received since the last call.
func (f *fakeForge) last(t *testing.T) request {
	t.Helper()
	got := f.requests()
	if len(got) != 1 {
		t.Fatalf("fake forge received %d requests, want 1: %+v", len(got), got)
	}
	return got[0]
}

// sameJSON tells whether two JSON texts hold the same value.
func sameJSON(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("request body %q: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("wanted body %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// checkRequest compares a request with the method, target, header and
// JSON body wanted; an empty body wants none.
func checkRequest(t *testing.T, got request, method, target string, header map[string]string, body string) {
	t.Helper()
	if got.Method != method || got.Target != target {
		t.Errorf("request %s %s; want %s %s", got.Method, got.Target, method, target)
	}
	for k, v := range header {
		if got.Header.Get(k) != v {
			t.Errorf("%s %s: header %s = %q; want %q", method, target, k, got.Header.Get(k), v)
		}
	}
	switch {
	case body == "" && got.Body != "":
		t.Errorf("%s %s: body %s; want none", method, target, got.Body)
	case body != "" && !sameJSON(t, got.Body, body):
		t.Errorf("%s %s: body\n%s\nwant\n%s", method, target, got.Body, body)
	case body != "" && got.Header.Get("Content-Type") != "application/json":
		t.Errorf("%s %s: content type %q", method, target, got.Header.Get("Content-Type"))
	}
}
