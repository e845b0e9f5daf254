package gitsrc

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gantryci/gantry/internal/gitsrc/gitsrctest"
)

// mirrorFixture is a repository served over HTTP behind a token, with
//
//	c1: a.txt=one, big.bin (2048 bytes), del.txt, dir/b.txt=bee; tags v1 (annotated), v0
//	c2 (main): a.txt=two, new.txt added, del.txt deleted
//	pr: a child of c2 that only refs/pull/1/head (and /merge) point to
type mirrorFixture struct {
	src   string // working tree of the served repository
	base  string // URL of the server
	url   string
	token []byte

	c1, c2, pr string
}

func newMirrorFixture(t *testing.T) *mirrorFixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	root := t.TempDir()
	f := &mirrorFixture{src: filepath.Join(root, "src.git"), token: []byte("tok-mirror-secret")}
	run(t, root, "init", "-q", "-b", "main", f.src)
	run(t, root, "init", "-q", "-b", "main", filepath.Join(root, "empty.git"))
	f.write(t, "a.txt", "one")
	f.write(t, "big.bin", strings.Repeat("x", 2048))
	f.write(t, "del.txt", "gone soon")
	f.write(t, "dir/b.txt", "bee")
	f.c1 = f.commit(t, "one")
	run(t, f.src, "tag", "-a", "v1", "-m", "v1")
	run(t, f.src, "tag", "v0")
	f.write(t, "a.txt", "two")
	f.write(t, "new.txt", "new")
	run(t, f.src, "rm", "-q", "del.txt")
	f.c2 = f.commit(t, "two")
	run(t, f.src, "checkout", "-q", "-b", "pr")
	f.write(t, "pr.txt", "proposed")
	f.pr = f.commit(t, "proposal")
	run(t, f.src, "checkout", "-q", "main")
	run(t, f.src, "branch", "-q", "-D", "pr")
	run(t, f.src, "update-ref", "refs/pull/1/head", f.pr)
	run(t, f.src, "update-ref", "refs/pull/1/merge", f.pr)
	run(t, f.src, "update-ref", "refs/changes/01/1/1", f.pr)
	f.base = gitsrctest.Serve(t, root, TokenUser, string(f.token))
	f.url = f.base + "/src.git"
	return f
}

func (f *mirrorFixture) write(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(f.src, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// commit commits all changes of the working tree and returns the commit.
func (f *mirrorFixture) commit(t *testing.T, msg string) string {
	t.Helper()
	run(t, f.src, "add", "-A")
	run(t, f.src, "commit", "-q", "-m", msg)
	return run(t, f.src, "rev-parse", "HEAD")
}

func openMirror(t *testing.T, url string) (*Mirror, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mirror.git")
	m, err := OpenMirror(dir, url)
	if err != nil {
		t.Fatal(err)
	}
	return m, dir
}

func TestMirrorRefs(t *testing.T) {
	t.Parallel()
	f := newMirrorFixture(t)
	ctx := context.Background()
	m, _ := openMirror(t, f.url)

	refs, err := m.Refs(ctx, f.token)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"refs/heads/main":  f.c2,
		"refs/tags/v0":     f.c1,
		"refs/tags/v1":     f.c1, // peeled from the tag object
		"refs/pull/1/head": f.pr,
	}
	if !maps.Equal(refs, want) {
		t.Errorf("Refs = %v, want %v", refs, want)
	}
	if m.Has(f.c2) {
		t.Error("Refs fetched objects")
	}
	if _, err := m.Refs(ctx, nil); err == nil {
		t.Error("Refs without credentials succeeded")
	}

	empty, _ := openMirror(t, f.base+"/empty.git")
	if refs, err := empty.Refs(ctx, f.token); err != nil || len(refs) != 0 {
		t.Errorf("Refs of an empty repository = %v, %v", refs, err)
	}
	if err := empty.Fetch(ctx, f.token); err != nil {
		t.Errorf("Fetch of an empty repository: %v", err)
	}
}

func TestListedRef(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"refs/heads/main":                 true,
		"refs/heads/feature/x":            true,
		"refs/tags/v1.0":                  true,
		"refs/pull/12/head":               true,
		"refs/merge-requests/3/head":      true,
		"refs/pull/12/merge":              false,
		"refs/pull/head":                  false,
		"refs/pull/1/2/head":              false,
		"refs/merge-requests/3/merge":     false,
		"refs/changes/01/1/1":             false,
		"refs/notes/commits":              false,
		"HEAD":                            false,
		"refs/remotes/origin/main":        false,
		"refs/keep-around/0123456789abcd": false,
	} {
		if got := listedRef(name); got != want {
			t.Errorf("listedRef(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestMirrorFetchAndReadFile(t *testing.T) {
	t.Parallel()
	f := newMirrorFixture(t)
	ctx := context.Background()
	m, dir := openMirror(t, f.url)

	if m.Has(f.c1) {
		t.Fatal("a new mirror has a commit")
	}
	if _, err := m.ReadFile(f.c1, "a.txt", 100); !errors.Is(err, ErrNoCommit) {
		t.Errorf("ReadFile before Fetch: %v, want ErrNoCommit", err)
	}
	if err := m.Fetch(ctx, nil); err == nil {
		t.Error("Fetch without credentials succeeded")
	}
	if err := m.Fetch(ctx, f.token); err != nil {
		t.Fatal(err)
	}
	if !m.Has(f.c1) || !m.Has(f.c2) || m.Has(f.pr) {
		t.Errorf("after Fetch: has c1 %v, c2 %v, pr %v; want true, true, false", m.Has(f.c1), m.Has(f.c2), m.Has(f.pr))
	}
	for _, c := range []struct{ sha, path, want string }{
		{f.c1, "a.txt", "one"},
		{f.c2, "a.txt", "two"},
		{f.c1, "./dir//b.txt", "bee"},
		{f.c2, "new.txt", "new"},
	} {
		if b, err := m.ReadFile(c.sha, c.path, 100); err != nil || string(b) != c.want {
			t.Errorf("ReadFile(%s, %s) = %q, %v; want %q", c.sha[:7], c.path, b, err, c.want)
		}
	}
	for _, c := range []struct{ sha, path string }{{f.c2, "del.txt"}, {f.c1, "new.txt"}, {f.c1, "dir/b.txt/x"}, {f.c1, "nodir/x"}} {
		_, err := m.ReadFile(c.sha, c.path, 100)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no file "+c.path+" at commit "+c.sha[:12]) {
			t.Errorf("ReadFile(%s, %s) = %v, want ErrNotFound", c.sha[:7], c.path, err)
		}
	}
	for _, p := range []string{"../x", "/etc/passwd", "dir/../../x", "dir/../a.txt", "", "."} {
		_, err := m.ReadFile(f.c1, p, 100)
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"`+p+`"`) {
			t.Errorf("ReadFile(%q) = %v, want an error naming the path", p, err)
		}
	}
	if _, err := m.ReadFile(f.c1, "dir", 100); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("ReadFile of a directory: %v", err)
	}
	if _, err := m.ReadFile(f.c1, "big.bin", 2047); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "2048 bytes") {
		t.Errorf("ReadFile over the limit: %v, want ErrTooLarge", err)
	}
	if b, err := m.ReadFile(f.c1, "big.bin", 2048); err != nil || len(b) != 2048 {
		t.Errorf("ReadFile at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := m.ReadFile("c0ffee", "a.txt", 100); err == nil || errors.Is(err, ErrNoCommit) {
		t.Errorf("ReadFile at an abbreviated commit: %v", err)
	}
	ref(t, m, "refs/tags/v1", "") // an annotated tag is stored as its tag object
	ref(t, m, "refs/tags/v0", f.c1)

	// The branch moves on: an incremental fetch brings the new commit and
	// the old ones stay readable.
	f.write(t, "a.txt", "three")
	c3 := f.commit(t, "three")
	if m.Has(c3) {
		t.Fatal("has a commit before fetching it")
	}
	if err := m.Fetch(ctx, f.token); err != nil {
		t.Fatal(err)
	}
	if !m.Has(c3) {
		t.Fatal("incremental Fetch did not bring the new commit")
	}
	ref(t, m, "refs/heads/main", c3)
	for sha, want := range map[string]string{f.c1: "one", f.c2: "two", c3: "three"} {
		if b, err := m.ReadFile(sha, "a.txt", 100); err != nil || string(b) != want {
			t.Errorf("ReadFile(%s) after the branch moved = %q, %v; want %q", sha[:7], b, err, want)
		}
	}
	if err := m.Fetch(ctx, f.token); err != nil {
		t.Errorf("Fetch when up to date: %v", err)
	}

	// The objects are kept in dir.
	again, err := OpenMirror(dir, f.url)
	if err != nil || !again.Has(c3) {
		t.Errorf("reopened mirror: %v, has %s: %v", err, c3[:7], err == nil && again.Has(c3))
	}
}

// ref checks the mirror's ref name: it points to want, or exists if want is "".
func ref(t *testing.T, m *Mirror, name, want string) {
	t.Helper()
	r, err := m.repo.Reference(plumbing.ReferenceName(name), false)
	switch {
	case err != nil:
		t.Errorf("ref %s: %v", name, err)
	case want != "" && r.Hash().String() != want:
		t.Errorf("ref %s = %s, want %s", name, r.Hash(), want)
	}
}

func TestMirrorFetchRefs(t *testing.T) {
	t.Parallel()
	f := newMirrorFixture(t)
	ctx := context.Background()
	m, _ := openMirror(t, f.url)

	if err := m.Fetch(ctx, f.token, "refs/pull/1/head"); err != nil {
		t.Fatal(err)
	}
	if !m.Has(f.pr) || !m.Has(f.c1) {
		t.Fatal("Fetch(refs/pull/1/head) did not bring the commit and its history")
	}
	if b, err := m.ReadFile(f.pr, "pr.txt", 100); err != nil || string(b) != "proposed" {
		t.Errorf("ReadFile at the pull request = %q, %v", b, err)
	}
	ref(t, m, "refs/pull/1/head", f.pr)
	for _, name := range []string{"refs/heads/main", "refs/tags/v1", "refs/tags/v0"} {
		if _, err := m.repo.Reference(plumbing.ReferenceName(name), false); err == nil {
			t.Errorf("Fetch of one ref stored %s too", name)
		}
	}

	// The pull request is force-pushed to a commit that is no descendant.
	amended := run(t, f.src, "commit-tree", "-p", f.c1, "-m", "amended", f.c2+"^{tree}")
	run(t, f.src, "update-ref", "refs/pull/1/head", amended)
	if err := m.Fetch(ctx, f.token, "refs/pull/1/head", "refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	ref(t, m, "refs/pull/1/head", amended)
	ref(t, m, "refs/heads/main", f.c2)

	err := m.Fetch(ctx, f.token, "refs/pull/2/head")
	if err == nil || !strings.Contains(err.Error(), "refs/pull/2/head") {
		t.Errorf("Fetch of a missing ref: %v", err)
	}
	for _, r := range []string{"main", "refs/heads/*", "refs/heads/a:b", ""} {
		if err := m.Fetch(ctx, f.token, r); err == nil || !strings.Contains(err.Error(), "not a full ref name") {
			t.Errorf("Fetch(%q) = %v, want a refusal", r, err)
		}
	}

	// Credentials in the URL never reach an error message.
	bad, _ := openMirror(t, strings.Replace(f.url, "://", "://me:in-url-secret@", 1)+"-missing")
	if _, err := bad.Refs(ctx, nil); err == nil || strings.Contains(err.Error(), "in-url-secret") {
		t.Errorf("Refs of a missing repository: %v", err)
	}
	if err := bad.Fetch(ctx, nil); err == nil || strings.Contains(err.Error(), "in-url-secret") {
		t.Errorf("Fetch of a missing repository: %v", err)
	}
}

func TestMirrorChanged(t *testing.T) {
	t.Parallel()
	f := newMirrorFixture(t)
	run(t, f.src, "mv", "dir/b.txt", "dir/c.txt")
	c3 := f.commit(t, "rename")
	m, _ := openMirror(t, f.url)
	if err := m.Fetch(context.Background(), f.token); err != nil {
		t.Fatal(err)
	}

	zero := strings.Repeat("0", 40)
	two := []string{"a.txt", "del.txt", "new.txt"}
	for _, c := range []struct {
		base, head string
		limit      int
		want       []string
		truncated  bool
	}{
		{f.c1, f.c2, 100, two, false},
		{zero, f.c2, 100, two, false},
		{"", f.c2, 100, two, false},
		{f.c2, f.c1, 100, two, false},
		{f.c2, c3, 100, []string{"dir/b.txt", "dir/c.txt"}, false},
		{f.c1, c3, 100, []string{"a.txt", "del.txt", "dir/b.txt", "dir/c.txt", "new.txt"}, false},
		{"", f.c1, 100, []string{"a.txt", "big.bin", "del.txt", "dir/b.txt"}, false}, // root commit
		{f.c1, f.c2, 3, two, false},
		{f.c1, f.c2, 2, two[:2], true},
		{f.c1, f.c2, 0, nil, true},
		{f.c2, f.c2, 10, nil, false},
	} {
		got, truncated, err := m.Changed(c.base, c.head, c.limit)
		if err != nil || !slices.Equal(got, c.want) || truncated != c.truncated {
			t.Errorf("Changed(%.7s, %.7s, %d) = %q, %v, %v; want %q, %v", c.base, c.head, c.limit, got, truncated, err, c.want, c.truncated)
		}
	}
	missing := strings.Repeat("1", 40)
	if _, _, err := m.Changed(f.c1, missing, 10); !errors.Is(err, ErrNoCommit) {
		t.Errorf("Changed to a missing commit: %v", err)
	}
	if _, _, err := m.Changed(missing, f.c2, 10); !errors.Is(err, ErrNoCommit) {
		t.Errorf("Changed from a missing commit: %v", err)
	}
}

func TestMirrorConcurrentUse(t *testing.T) {
	t.Parallel()
	f := newMirrorFixture(t)
	ctx := context.Background()
	m, _ := openMirror(t, f.url)
	if err := m.Fetch(ctx, f.token, "refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	wg.Go(func() { errs <- m.Fetch(ctx, f.token) })
	wg.Go(func() { errs <- m.Fetch(ctx, f.token, "refs/pull/1/head") })
	wg.Go(func() {
		_, err := m.Refs(ctx, f.token)
		errs <- err
	})
	for range 3 {
		wg.Go(func() {
			if _, err := m.ReadFile(f.c1, "a.txt", 100); err != nil {
				errs <- err
				return
			}
			_, _, err := m.Changed("", f.c2, 10)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if !m.Has(f.pr) {
		t.Error("concurrent Fetch lost the pull request")
	}
}
