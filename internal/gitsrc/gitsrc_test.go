package gitsrc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestResolveAndClone(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	run(t, dir, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "f"), []byte("1"), 0o644)
	run(t, dir, "add", "f")
	run(t, dir, "commit", "-q", "-m", "one")
	first := run(t, dir, "rev-parse", "HEAD")
	run(t, dir, "tag", "-a", "v1", "-m", "v1")
	os.WriteFile(filepath.Join(dir, "f"), []byte("2"), 0o644)
	run(t, dir, "commit", "-q", "-am", "two")
	second := run(t, dir, "rev-parse", "HEAD")
	url := "file://" + dir
	ctx := context.Background()

	for rev, want := range map[string]string{"": second, "main": second, "v1": first, first: first} {
		got, err := Resolve(ctx, url, rev)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", rev, got, err, want)
		}
	}
	if _, err := Resolve(ctx, url, "nope"); !errors.Is(err, ErrNoRevision) {
		t.Errorf("Resolve(nope) = %v, want ErrNoRevision", err)
	}
	out := filepath.Join(t.TempDir(), "co")
	sha, err := Clone(ctx, url, "v1", out, nil)
	if err != nil || sha != first {
		t.Fatalf("Clone(v1) = %q, %v", sha, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "f")); string(b) != "1" {
		t.Errorf("checked out content %q, want 1", b)
	}
}

// A bare repository whose HEAD names a branch it lacks (made with another
// default branch than the one pushed) still clones at a branch or commit.
func TestCloneWithDanglingHEAD(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	src := t.TempDir()
	run(t, src, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(src, "f"), []byte("1"), 0o644)
	run(t, src, "add", "f")
	run(t, src, "commit", "-q", "-m", "one")
	sha := run(t, src, "rev-parse", "HEAD")
	bare := filepath.Join(t.TempDir(), "r.git")
	run(t, src, "init", "-q", "--bare", "-b", "trunk", bare)
	run(t, src, "push", "-q", bare, "HEAD:refs/heads/main")
	for _, rev := range []string{"main", sha} {
		out := filepath.Join(t.TempDir(), "co")
		got, err := Clone(context.Background(), "file://"+bare, rev, out, nil)
		if err != nil || got != sha {
			t.Errorf("Clone(%s) = %q, %v; want %s", rev, got, err, sha)
			continue
		}
		if b, _ := os.ReadFile(filepath.Join(out, "f")); string(b) != "1" {
			t.Errorf("Clone(%s): content %q", rev, b)
		}
	}
}
