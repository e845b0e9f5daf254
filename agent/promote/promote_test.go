package promote

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gantryci/gantry/internal/gitsrc"
	"github.com/gantryci/gantry/internal/gitsrc/gitsrctest"
)

const kustomization = `resources:
- deployment.yaml
images:
- name: registry.example/web
  newTag: "1"
`

// gitCmd runs the git command line in dir and returns its output.
func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=other", "-c", "user.email=other@example.invalid", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=hooks"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// fixture is a configuration repository: a bare repository with branch
// main holding apps/web/deployment.yaml and apps/web/kustomization.yaml.
type fixture struct {
	root string // holds the bare repository r.git
	bare string
	url  string
	seed string // commit of the initial content
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root := t.TempDir()
	f := &fixture{root: root, bare: filepath.Join(root, "r.git")}
	f.url = "file://" + f.bare
	gitCmd(t, root, "init", "-q", "--bare", "-b", "main", f.bare)
	co := f.checkout(t)
	write(t, co, "apps/web/deployment.yaml", deployment)
	write(t, co, "apps/web/kustomization.yaml", kustomization)
	gitCmd(t, co, "add", ".")
	gitCmd(t, co, "commit", "-q", "-m", "seed")
	gitCmd(t, co, "push", "-q", "origin", "main")
	f.seed = f.head(t)
	return f
}

// checkout clones the repository with the command line.
func (f *fixture) checkout(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "co")
	gitCmd(t, f.root, "clone", "-q", f.bare, dir)
	return dir
}

func (f *fixture) head(t *testing.T) string {
	t.Helper()
	return gitCmd(t, f.bare, "rev-parse", "refs/heads/main")
}

func (f *fixture) show(t *testing.T, rev, path string) string {
	t.Helper()
	return gitCmd(t, f.bare, "show", rev+":"+path) + "\n"
}

// push commits path with content from a fresh clone and pushes it.
func (f *fixture) push(t *testing.T, path, content, msg string) string {
	t.Helper()
	co := f.checkout(t)
	write(t, co, path, content)
	gitCmd(t, co, "add", path)
	gitCmd(t, co, "commit", "-q", "-m", msg)
	gitCmd(t, co, "push", "-q", "origin", "main")
	return gitCmd(t, co, "rev-parse", "HEAD")
}

func write(t *testing.T, dir, path, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logLines collects what Run logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) log(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (f *fixture) request(file, ref string) Request {
	return Request{
		URL: f.url, Branch: "main", File: file, Image: "registry.example/web", Ref: ref,
		Message: "promote web to " + ref + "\n\nsource abc123, job 7", Author: "Gantry CI",
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ref := "registry.example/web@" + digestA
	work := t.TempDir()
	var log logLines
	res, err := Run(context.Background(), work, f.request("apps/web/deployment.yaml", ref), log.log)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Replaced != 1 || res.Attempts != 1 || res.Commit != f.head(t) {
		t.Errorf("Run = %+v; bare head %s", res, f.head(t))
	}
	want := strings.Replace(deployment, "registry.example/web:1", ref, 1)
	if got := f.show(t, "main", "apps/web/deployment.yaml"); got != want {
		t.Errorf("deployment.yaml:\n%s\nwant:\n%s", got, want)
	}
	if got := gitCmd(t, f.bare, "log", "-1", "--format=%an <%ae>|%B|%P", "main"); got != "Gantry CI <gantry@localhost>|promote web to "+ref+"\n\nsource abc123, job 7|"+f.seed {
		t.Errorf("commit: %q", got)
	}
	for _, s := range []string{
		"cloned branch main of " + f.url + " at " + f.seed,
		"apps/web/deployment.yaml: containers[web] registry.example/web:1 -> " + ref,
		"pushed " + res.Commit + " to branch main of " + f.url,
	} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log does not say %q:\n%s", s, log.String())
		}
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("work directory keeps %d entries", len(entries))
	}

	// The same promotion again commits nothing.
	again, err := Run(context.Background(), work, f.request("apps/web/deployment.yaml", ref), nil)
	if err != nil || again.Changed || again.Commit != res.Commit || again.Attempts != 0 || f.head(t) != res.Commit {
		t.Errorf("second Run = %+v, %v; want no change at %s (head %s)", again, err, res.Commit, f.head(t))
	}
}

func TestRunKustomization(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ref := "registry.example/web@" + digestA
	res, err := Run(context.Background(), t.TempDir(), f.request("apps/web/kustomization.yaml", ref), nil)
	if err != nil || !res.Changed || res.Replaced != 1 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	want := strings.Replace(kustomization, `newTag: "1"`, `digest: "`+digestA+`"`, 1)
	if got := f.show(t, "main", "apps/web/kustomization.yaml"); got != want {
		t.Errorf("kustomization.yaml:\n%s\nwant:\n%s", got, want)
	}
	if got := f.show(t, "main", "apps/web/deployment.yaml"); got != deployment {
		t.Errorf("deployment.yaml changed:\n%s", got)
	}
}

func TestRunRetriesWhenTheBranchMoved(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ref := "registry.example/web@" + digestA
	req := f.request("apps/web/deployment.yaml", ref)
	var other string
	req.beforePush = func(attempt int) {
		if attempt == 1 {
			other = f.push(t, "apps/api/deployment.yaml", "kind: Deployment\n", "add api")
		}
	}
	var log logLines
	res, err := Run(context.Background(), t.TempDir(), req, log.log)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	if !res.Changed || res.Attempts != 2 || res.Commit != f.head(t) {
		t.Errorf("Run = %+v; bare head %s", res, f.head(t))
	}
	if got := gitCmd(t, f.bare, "log", "--format=%s", "main"); got != "promote web to "+ref+"\nadd api\nseed" {
		t.Errorf("history:\n%s", got)
	}
	if parent := gitCmd(t, f.bare, "rev-parse", "main^"); parent != other {
		t.Errorf("promotion's parent %s, want the other push %s", parent, other)
	}
	if got := f.show(t, "main", "apps/api/deployment.yaml"); got != "kind: Deployment\n" {
		t.Errorf("the other push's file: %q", got)
	}
	if !strings.Contains(log.String(), "rejected") || !strings.Contains(log.String(), "fetched branch main of "+f.url+" at "+other) {
		t.Errorf("log:\n%s", log.String())
	}
}

func TestRunSomeoneElsePromotedMeanwhile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ref := "registry.example/web@" + digestA
	req := f.request("apps/web/deployment.yaml", ref)
	var other string
	req.beforePush = func(int) {
		other = f.push(t, "apps/web/deployment.yaml", strings.Replace(deployment, "registry.example/web:1", ref, 1), "the same, by hand")
	}
	res, err := Run(context.Background(), t.TempDir(), req, nil)
	if err != nil || res.Changed || res.Commit != other || res.Attempts != 1 || f.head(t) != other {
		t.Errorf("Run = %+v, %v; want no change at %s (head %s)", res, err, other, f.head(t))
	}
}

func TestRunGivesUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := f.request("apps/web/deployment.yaml", "registry.example/web:2")
	req.Attempts = 2
	req.beforePush = func(attempt int) {
		f.push(t, "moving", strings.Repeat("x", attempt), "move")
	}
	res, err := Run(context.Background(), t.TempDir(), req, nil)
	if !errors.Is(err, ErrRejected) || res.Attempts != 2 || res.Changed || res.Commit != "" {
		t.Errorf("Run = %+v, %v; want ErrRejected after 2 attempts", res, err)
	}
	if got := gitCmd(t, f.bare, "log", "--format=%s", "main"); got != "move\nmove\nseed" {
		t.Errorf("history:\n%s", got)
	}
}

// TestRunServerRejects has the server, not go-git, find that the branch
// moved: a pre-receive hook moves it after go-git read the refs.
func TestRunServerRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := f.push(t, "other", "x\n", "other")
	gitCmd(t, f.bare, "update-ref", "refs/heads/main", f.seed)
	hook := "#!/bin/sh\nif [ ! -e moved ]; then\n  touch moved\n  env -u GIT_QUARANTINE_PATH git update-ref refs/heads/main " + other + "\nfi\n"
	write(t, f.bare, "hooks/pre-receive", hook)
	if err := os.Chmod(filepath.Join(f.bare, "hooks/pre-receive"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log logLines
	res, err := Run(context.Background(), t.TempDir(), f.request("apps/web/deployment.yaml", "registry.example/web:2"), log.log)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	if res.Attempts != 2 || res.Commit != f.head(t) || gitCmd(t, f.bare, "rev-parse", "main^") != other {
		t.Errorf("Run = %+v; head %s\n%s", res, f.head(t), log.String())
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.push(t, "bad.yaml", "containers:\n- name: a\n  image: [\n", "bad")
	for _, c := range []struct {
		name string
		req  func(*Request)
		is   error
		want string
	}{
		{"no image", func(r *Request) { r.Image, r.Ref = "registry.example/api", "registry.example/api:1" }, ErrNoImage, "apps/web/deployment.yaml: no reference to the image registry.example/api"},
		{"no file", func(r *Request) { r.File = "apps/api/deployment.yaml" }, ErrNoFile, "apps/api/deployment.yaml"},
		{"directory", func(r *Request) { r.File = "apps/web" }, nil, "not a regular file"},
		{"bad yaml", func(r *Request) { r.File = "bad.yaml" }, nil, "parse bad.yaml, document 1: yaml: line 3"},
		{"no branch", func(r *Request) { r.Branch = "nope" }, nil, "clone branch nope of " + f.url},
		{"outside", func(r *Request) { r.File = "../x.yaml" }, nil, "not a slash-separated path inside the repository"},
		{"unclean path", func(r *Request) { r.File = "./apps/web/deployment.yaml" }, nil, "not a slash-separated path inside the repository"},
		{"missing fields", func(r *Request) { r.Branch, r.Ref = "", "" }, nil, "no Branch, Ref"},
		{"credential for file", func(r *Request) { r.Credential = []byte("tok") }, gitsrc.ErrCredential, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req := f.request("apps/web/deployment.yaml", "registry.example/web:2")
			c.req(&req)
			res, err := Run(context.Background(), t.TempDir(), req, nil)
			if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.want) || res.Changed {
				t.Errorf("Run = %+v, %v; want an error wrapping %v saying %q", res, err, c.is, c.want)
			}
		})
	}
}

// TestRunOverHTTP promotes in a private repository served over HTTP, with
// the credential as a secret and in the URL: neither reaches the log.
func TestRunOverHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	gitCmd(t, f.bare, "config", "http.receivepack", "true")
	const token = "tok-5ecret-value"
	base := gitsrctest.Serve(t, f.root, gitsrc.TokenUser, token) + "/r.git"
	var log logLines

	req := f.request("apps/web/deployment.yaml", "registry.example/web:2")
	req.URL, req.Credential = base, []byte(token+"\n")
	res, err := Run(context.Background(), t.TempDir(), req, log.log)
	if err != nil || !res.Changed || res.Commit != f.head(t) {
		t.Fatalf("Run = %+v, %v\n%s", res, err, log.String())
	}

	req = f.request("apps/web/deployment.yaml", "registry.example/web:3")
	req.URL = strings.Replace(base, "://", "://"+gitsrc.TokenUser+":"+token+"@", 1)
	res, err = Run(context.Background(), t.TempDir(), req, log.log)
	if err != nil || !res.Changed || res.Commit != f.head(t) {
		t.Fatalf("Run with the token in the URL = %+v, %v\n%s", res, err, log.String())
	}
	if !strings.Contains(log.String(), "x-access-token:***@") {
		t.Errorf("log does not name the redacted URL:\n%s", log.String())
	}

	req.Credential, req.URL = []byte("wrong"), base
	_, err = Run(context.Background(), t.TempDir(), req, log.log)
	if err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("Run with a wrong token: %v", err)
	}
	if strings.Contains(log.String(), token) {
		t.Errorf("log holds the token:\n%s", log.String())
	}
}
