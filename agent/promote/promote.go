// Package promote closes the loop from CI to GitOps: it sets the image of
// an application in a configuration repository to a newly built reference,
// commits and pushes, and the GitOps controller that follows the
// repository deploys it.
package promote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/gantryci/gantry/internal/gitsrc"
)

const (
	// DefaultAttempts bounds the pushes of a promotion whose Request does
	// not say.
	DefaultAttempts = 5
	// DefaultAuthorEmail is the commit author's email when the Request
	// gives none.
	DefaultAuthorEmail = "gantry@localhost"
	// maxFileSize bounds the file a promotion edits.
	maxFileSize = 8 << 20
)

// Request is one promotion.
type Request struct {
	// URL is the configuration repository.
	URL string
	// Credential authenticates to it, as gitsrc.Auth takes it (a token,
	// user:password, an SSH private key); nil means none.
	Credential []byte
	// Branch is the branch to commit to.
	Branch string
	// File is the slash-separated path in the repository of a manifest
	// file (one or more YAML documents) or of a kustomization (base name
	// kustomization.yaml, kustomization.yml or Kustomization).
	File string
	// Image is the repository to set, as written in File, without tag or
	// digest: "registry.example/web".
	Image string
	// Ref is the reference to set: normally NAME@sha256:<hex>, or
	// NAME:tag.
	Ref string
	// Message is the commit message; the caller names the source commit,
	// the job and the digest. Empty means "promote IMAGE to REF".
	Message string
	// Author and AuthorEmail sign the commit; empty means "gantry" and
	// DefaultAuthorEmail.
	Author      string
	AuthorEmail string
	// Attempts bounds the pushes tried, the first included, when pushes
	// are rejected because the branch moved; 0 means DefaultAttempts.
	Attempts int

	// beforePush, when set by a test, runs before every push.
	beforePush func(attempt int)
}

// Result is what a promotion did.
type Result struct {
	// Commit is the commit at the head of the branch that holds the
	// promotion: the one pushed, or the head that already had it.
	Commit string
	// Changed is false when the file had the reference already: the same
	// promotion twice commits once.
	Changed bool
	// Replaced counts the image references changed.
	Replaced int
	// Attempts counts the pushes tried.
	Attempts int
}

func (r *Request) validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"URL", r.URL}, {"Branch", r.Branch}, {"File", r.File}, {"Image", r.Image}, {"Ref", r.Ref}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("promotion request: no %s", strings.Join(missing, ", "))
	}
	if plumbing.NewBranchReferenceName(r.Branch).Validate() != nil {
		return fmt.Errorf("promotion request: invalid branch name %q", r.Branch)
	}
	if strings.Contains(r.File, `\`) || path.Clean(r.File) != r.File || !filepath.IsLocal(filepath.FromSlash(r.File)) {
		return fmt.Errorf("promotion request: file %q is not a slash-separated path inside the repository", r.File)
	}
	if r.Attempts < 0 {
		return fmt.Errorf("promotion request: %d attempts", r.Attempts)
	}
	if err := checkImage(r.Image); err != nil {
		return fmt.Errorf("promotion request: %w", err)
	}
	if _, err := parseRef(r.Ref); err != nil {
		return fmt.Errorf("promotion request: %w", err)
	}
	return nil
}

// Run clones req.Branch of req.URL into a temporary directory under
// workDir (removed afterwards), sets every reference to req.Image in
// req.File to req.Ref (see Set), commits and pushes. A push rejected
// because the branch moved meanwhile is tried again on the branch's new
// head: fetch, reset onto it, set, commit, push, up to req.Attempts pushes
// in all; after that the error wraps ErrRejected. When the file has the
// reference already, at first or after someone else's push, nothing is
// committed.
//
// A file that is not on the branch is an error wrapping ErrNoFile, one
// without the image ErrNoImage, one that does not parse an error naming the
// file and line.
//
// log, if not nil, receives lines of progress for people: what was cloned
// at which commit, each reference replaced, what was pushed. Lines and
// errors name the repository without the credentials of its URL.
func Run(ctx context.Context, workDir string, req Request, log func(line string)) (Result, error) {
	if log == nil {
		log = func(string) {}
	}
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	attempts := req.Attempts
	if attempts == 0 {
		attempts = DefaultAttempts
	}
	auth, err := gitsrc.Auth(req.URL, req.Credential)
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp(workDir, "promote-")
	if err != nil {
		return Result{}, fmt.Errorf("promote: %w", err)
	}
	defer os.RemoveAll(dir)
	p := &promotion{req: req, auth: auth, url: gitsrc.Redact(req.URL), dir: dir, log: log}
	head, err := p.clone(ctx)
	if err != nil {
		return Result{}, err
	}
	var res Result
	for attempt := 1; ; attempt++ {
		commit, replaced, err := p.apply(head)
		if err != nil {
			return res, err
		}
		if replaced == 0 {
			log(fmt.Sprintf("%s already has %s at %s: nothing to commit", req.File, req.Ref, head))
			res.Commit = head.String()
			return res, nil
		}
		if req.beforePush != nil {
			req.beforePush(attempt)
		}
		res.Attempts = attempt
		err = p.push(ctx)
		if err == nil {
			log(fmt.Sprintf("pushed %s to branch %s of %s", commit, req.Branch, p.url))
			res.Commit, res.Changed, res.Replaced = commit.String(), true, replaced
			return res, nil
		}
		if !rejected(err) {
			return res, fmt.Errorf("push %s to branch %s of %s: %w", commit, req.Branch, p.url, err)
		}
		if attempt >= attempts {
			return res, fmt.Errorf("push %s to branch %s of %s: %w after %d attempts: %w", commit, req.Branch, p.url, ErrRejected, attempt, err)
		}
		log(fmt.Sprintf("push of %s rejected, the branch moved (%v): fetching it again, attempt %d of %d", commit, err, attempt+1, attempts))
		if head, err = p.refetch(ctx); err != nil {
			return res, err
		}
	}
}

// promotion is the state of one Run.
type promotion struct {
	req  Request
	auth transport.AuthMethod
	url  string // redacted
	dir  string
	log  func(string)
	repo *git.Repository
}

func (p *promotion) branchRef() plumbing.ReferenceName {
	return plumbing.NewBranchReferenceName(p.req.Branch)
}

// clone clones the branch and returns its head.
func (p *promotion) clone(ctx context.Context) (plumbing.Hash, error) {
	repo, err := git.PlainCloneContext(ctx, p.dir, false, &git.CloneOptions{
		URL: p.req.URL, Auth: p.auth, ReferenceName: p.branchRef(), SingleBranch: true, Tags: git.NoTags,
	})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("clone branch %s of %s: %w", p.req.Branch, p.url, err)
	}
	p.repo = repo
	head, err := repo.Head()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("head of branch %s of %s: %w", p.req.Branch, p.url, err)
	}
	p.log(fmt.Sprintf("cloned branch %s of %s at %s", p.req.Branch, p.url, head.Hash()))
	return head.Hash(), nil
}

// apply sets the image in the file of the commit head, checked out, and
// commits the change. It returns the new commit and how many references
// it changed; none means no commit.
func (p *promotion) apply(head plumbing.Hash) (plumbing.Hash, int, error) {
	content, mode, err := p.readFile(head)
	if err != nil {
		return plumbing.ZeroHash, 0, err
	}
	out, replaced, err := Set(p.req.File, content, p.req.Image, p.req.Ref)
	if err != nil {
		return plumbing.ZeroHash, 0, err
	}
	if len(replaced) == 0 {
		return plumbing.ZeroHash, 0, nil
	}
	for _, r := range replaced {
		p.log(r)
	}
	root, err := os.OpenRoot(p.dir)
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("write %s: %w", p.req.File, err)
	}
	defer root.Close()
	perm := os.FileMode(0o644)
	if mode == filemode.Executable {
		perm = 0o755
	}
	if err := root.WriteFile(filepath.FromSlash(p.req.File), out, perm); err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("write %s: %w", p.req.File, err)
	}
	wt, err := p.repo.Worktree()
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("worktree: %w", err)
	}
	if _, err := wt.Add(p.req.File); err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("add %s: %w", p.req.File, err)
	}
	msg := p.req.Message
	if msg == "" {
		msg = fmt.Sprintf("promote %s to %s", p.req.Image, p.req.Ref)
	}
	sig := &object.Signature{Name: p.req.Author, Email: p.req.AuthorEmail, When: time.Now()}
	if sig.Name == "" {
		sig.Name = "gantry"
	}
	if sig.Email == "" {
		sig.Email = DefaultAuthorEmail
	}
	commit, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("commit %s: %w", p.req.File, err)
	}
	p.log(fmt.Sprintf("committed %s on %s", commit, head))
	return commit, len(replaced), nil
}

// readFile returns the content and mode of the file in the commit head.
// It reads Git's objects, not the checkout, so that a symbolic link cannot
// lead out of the repository.
func (p *promotion) readFile(head plumbing.Hash) ([]byte, filemode.FileMode, error) {
	c, err := p.repo.CommitObject(head)
	if err != nil {
		return nil, 0, fmt.Errorf("commit %s: %w", head, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, 0, fmt.Errorf("tree of %s: %w", head, err)
	}
	e, err := tree.FindEntry(p.req.File)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrFileNotFound) {
		return nil, 0, fmt.Errorf("%s at %s of branch %s: %w", p.req.File, head, p.req.Branch, ErrNoFile)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s at %s: %w", p.req.File, head, err)
	}
	if e.Mode != filemode.Regular && e.Mode != filemode.Executable && e.Mode != filemode.Deprecated {
		return nil, 0, fmt.Errorf("%s at %s: not a regular file (mode %s)", p.req.File, head, e.Mode)
	}
	blob, err := p.repo.BlobObject(e.Hash)
	if err != nil {
		return nil, 0, fmt.Errorf("%s at %s: %w", p.req.File, head, err)
	}
	if blob.Size > maxFileSize {
		return nil, 0, fmt.Errorf("%s at %s: %d bytes, more than %d", p.req.File, head, blob.Size, maxFileSize)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, 0, fmt.Errorf("%s at %s: %w", p.req.File, head, err)
	}
	defer r.Close()
	content, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("%s at %s: %w", p.req.File, head, err)
	}
	return content, e.Mode, nil
}

// push pushes the branch, without force.
func (p *promotion) push(ctx context.Context) error {
	spec := config.RefSpec(p.branchRef().String() + ":" + p.branchRef().String())
	return p.repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: p.auth})
}

// refetch fetches the branch, resets the checkout onto it and returns its
// head.
func (p *promotion) refetch(ctx context.Context) (plumbing.Hash, error) {
	remote := plumbing.NewRemoteReferenceName("origin", p.req.Branch)
	spec := config.RefSpec("+" + p.branchRef().String() + ":" + remote.String())
	err := p.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: p.auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return plumbing.ZeroHash, fmt.Errorf("fetch branch %s of %s: %w", p.req.Branch, p.url, err)
	}
	ref, err := p.repo.Reference(remote, true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetch branch %s of %s: %w", p.req.Branch, p.url, err)
	}
	wt, err := p.repo.Worktree()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("worktree: %w", err)
	}
	if err := wt.Reset(&git.ResetOptions{Commit: ref.Hash(), Mode: git.HardReset}); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reset onto %s: %w", ref.Hash(), err)
	}
	p.log(fmt.Sprintf("fetched branch %s of %s at %s", p.req.Branch, p.url, ref.Hash()))
	return ref.Hash(), nil
}

// rejected reports whether err is a push rejected because the branch
// moved: go-git finds it before sending (non-fast-forward), or the server
// does, when another push won the race for the ref.
func rejected(err error) bool {
	if errors.Is(err, git.ErrNonFastForwardUpdate) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"non-fast-forward", "fetch first", "rejected", "failed to lock", "cannot lock ref", "failed to update ref", "stale info"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
