package forge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	const token = "sekrit-token-123"
	long := strings.Repeat("x", 2000)
	cases := []struct {
		status    int
		body      string
		retryable bool
	}{
		{500, `{"message": "commit not found"}`, true},
		{502, "bad gateway", true},
		{429, `{"message": "API rate limit exceeded"}`, true},
		{408, "", true},
		{404, `{"message": "Not Found"}`, false},
		{401, `{"message": "bad credentials for ` + token + `"}`, false},
		{422, long + token, false},
	}
	for _, c := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(c.status)
			// A forge that echoes the credential, at the start and past
			// the excerpt's end.
			fmt.Fprint(w, r.Header.Get("Authorization")+" "+c.body)
		}))
		t.Cleanup(srv.Close)
		cl, err := New(Gitea, srv.URL, token, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = cl.SetStatus(context.Background(), Repo{Owner: "alice", Name: "app"}, shaAfter, Status{State: Success, Context: "c"})
		he, ok := errors.AsType[*HTTPError](err)
		if !ok || he.Status != c.status || he.Method != "POST" || he.Path != "/api/v1/repos/alice/app/statuses/"+shaAfter {
			t.Errorf("%d: error %#v; want an HTTPError for POST /api/v1/repos/alice/app/statuses/%s", c.status, err, shaAfter)
			continue
		}
		if Retryable(err) != c.retryable {
			t.Errorf("%d: Retryable = %v; want %v", c.status, !c.retryable, c.retryable)
		}
		if msg := err.Error(); strings.Contains(msg, token) || strings.Contains(msg, "sekrit") {
			t.Errorf("%d: error shows the token: %s", c.status, msg)
		}
		if len(he.Body) > maxErrorBody {
			t.Errorf("%d: error carries %d bytes of the response; want at most %d", c.status, len(he.Body), maxErrorBody)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(c.status)) {
			t.Errorf("%d: error does not say the status: %s", c.status, err)
		}
	}
}

func TestSecretNotInErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, `{"message": "Validation Failed", "request": %q}`, r.Header.Get("PRIVATE-TOKEN"))
	}))
	t.Cleanup(srv.Close)
	cl, err := New(GitLab, srv.URL, "glpat-abc", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.CreateHook(context.Background(), Repo{Owner: "g", Name: "p"}, Hook{URL: "https://ci/h", Secret: "hook-secret-xyz"})
	if err == nil || strings.Contains(err.Error(), "glpat-abc") {
		t.Errorf("CreateHook error %v; want one without the token", err)
	}

	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, `{"message": "Validation Failed", "errors": [{"message": "Hook already exists with secret hook-secret-xyz"}]}`)
	}))
	t.Cleanup(srv2.Close)
	cl, _ = New(GitHub, srv2.URL, "ghp", nil)
	_, err = cl.CreateHook(context.Background(), Repo{Owner: "o", Name: "r"}, Hook{URL: "https://ci/h", Secret: "hook-secret-xyz"})
	if !statusIs(err, 422) || strings.Contains(err.Error(), "hook-secret-xyz") {
		t.Errorf("CreateHook error %v; want the 422 without the hook secret", err)
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there now
	cl, err := New(GitHub, addr, "ghp_gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cl.SetStatus(context.Background(), Repo{Owner: "o", Name: "r"}, shaAfter, Status{State: Success})
	if err == nil || !Retryable(err) || strings.Contains(err.Error(), "ghp_gone") {
		t.Errorf("call to a closed port: %v, retryable %v; want a retryable error without the token", err, Retryable(err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = cl.SetStatus(ctx, Repo{Owner: "o", Name: "r"}, shaAfter, Status{State: Success})
	if err == nil || Retryable(err) {
		t.Errorf("call with a cancelled context: %v; want an error not worth retrying", err)
	}

	// A forge that answers only once the client gives up. The body is
	// read first: only then does the server notice the client leave.
	done := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(done) }) // runs first
	cl, _ = New(GitHub, slow.URL, "ghp", &http.Client{Timeout: 50 * time.Millisecond})
	if err := cl.SetStatus(context.Background(), Repo{Owner: "o", Name: "r"}, shaAfter, Status{State: Success}); !Retryable(err) {
		t.Errorf("call that timed out: %v; want it retryable", err)
	}

	for _, err := range []error{nil, errors.New("decode response: bad JSON"), fmt.Errorf("x: %w", ErrPayload)} {
		if Retryable(err) {
			t.Errorf("Retryable(%v) = true", err)
		}
	}
	if !Retryable(fmt.Errorf("set status: %w", &HTTPError{Status: 503})) || !Retryable(context.DeadlineExceeded) {
		t.Error("a wrapped 503, or a timeout, is not retryable")
	}
}

func TestResponseBounded(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "[")
		for range maxResponse / 8 {
			fmt.Fprint(w, `{"id":1},`)
		}
		fmt.Fprint(w, `{"id":1}]`)
	}))
	t.Cleanup(srv.Close)
	cl, _ := New(GitHub, srv.URL, "t", nil)
	_, err := cl.OpenPullRequests(context.Background(), Repo{Owner: "o", Name: "r"})
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a response over %d bytes: %v; want it refused", maxResponse, err)
	}
}

func TestRedirectElsewhereNotFollowed(t *testing.T) {
	t.Parallel()
	var reached atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(true)
	}))
	t.Cleanup(other.Close)
	// Same host name, another port: another origin.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	cl, _ := New(GitLab, srv.URL, "glpat-abc", nil)
	_, err := cl.OpenPullRequests(context.Background(), Repo{Owner: "g", Name: "p"})
	if reached.Load() {
		t.Error("the token was sent on to another host")
	}
	if !statusIs(err, http.StatusFound) {
		t.Errorf("redirect elsewhere: %v; want the 302 as an HTTPError", err)
	}
}
