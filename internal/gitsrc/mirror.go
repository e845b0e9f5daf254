package gitsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

var (
	// ErrNotFound is wrapped when a mirror has no file at a path.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge is wrapped when a file is over the size asked for.
	ErrTooLarge = errors.New("too large")
	// ErrNoCommit is wrapped when a commit is not in a mirror: fetch it
	// first.
	ErrNoCommit = errors.New("commit not in the mirror")
)

// maxRefs bounds the refs Mirror.Refs returns.
const maxRefs = 100_000

// Mirror is a bare clone of one remote repository in a local directory,
// kept current by Fetch. It is safe for concurrent use; its methods take
// turns.
type Mirror struct {
	url string

	// mu serializes use of repo: go-git's file system storage is not safe
	// for concurrent use.
	mu   sync.Mutex
	repo *git.Repository
}

// OpenMirror opens the mirror of the repository at url in dir, creating an
// empty bare repository there if there is none. url is kept for Fetch and
// Refs; it is not written to dir, so credentials in it stay in memory.
func OpenMirror(dir, url string) (*Mirror, error) {
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror of %s in %s: %w", Redact(url), dir, err)
	}
	return &Mirror{url: url, repo: repo}, nil
}

// Refs lists the remote's branches (refs/heads/*), tags (refs/tags/*) and
// pull or merge request heads (refs/pull/N/head, refs/merge-requests/N/head)
// as full ref name -> commit id, without fetching objects. An annotated
// tag maps to the commit it points to. credential is as for Auth; nil means
// none. An empty remote has no refs; one with more than 100,000 of them
// is an error.
func (m *Mirror) Refs(ctx context.Context, credential []byte) (map[string]string, error) {
	auth, err := Auth(m.url, credential)
	if err != nil {
		return nil, err
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{m.url}})
	list, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list refs of %s: %w", Redact(m.url), err)
	}
	refs := map[string]string{}
	peeled := map[string]string{}
	for _, r := range list {
		if r.Type() != plumbing.HashReference {
			continue
		}
		name := r.Name().String()
		if tag, ok := strings.CutSuffix(name, "^{}"); ok {
			peeled[tag] = r.Hash().String()
			continue
		}
		if !listedRef(name) {
			continue
		}
		if len(refs) == maxRefs {
			return nil, fmt.Errorf("list refs of %s: more than %d", Redact(m.url), maxRefs)
		}
		refs[name] = r.Hash().String()
	}
	for name, commit := range peeled {
		if _, ok := refs[name]; ok {
			refs[name] = commit
		}
	}
	return refs, nil
}

// listedRef reports whether Refs lists the ref named name.
func listedRef(name string) bool {
	if strings.HasPrefix(name, "refs/heads/") || strings.HasPrefix(name, "refs/tags/") {
		return true
	}
	for _, prefix := range []string{"refs/pull/", "refs/merge-requests/"} {
		if id, ok := strings.CutPrefix(name, prefix); ok {
			id, ok = strings.CutSuffix(id, "/head")
			return ok && id != "" && !strings.Contains(id, "/")
		}
	}
	return false
}

// Fetch brings the commits of refs (full names, such as refs/heads/main or
// refs/pull/7/head) and their history into the mirror, and stores each ref
// under its own name, moved by force. With no refs, it fetches all branches
// and tags. credential is as for Auth. A remote ref that does not exist is
// an error; an empty remote, when no refs are named, is not.
func (m *Mirror) Fetch(ctx context.Context, credential []byte, refs ...string) error {
	specs := []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	if len(refs) > 0 {
		specs = make([]config.RefSpec, 0, len(refs))
		for _, r := range refs {
			if !strings.HasPrefix(r, "refs/") || plumbing.ReferenceName(r).Validate() != nil {
				return fmt.Errorf("fetch %q from %s: not a full ref name", r, Redact(m.url))
			}
			specs = append(specs, config.RefSpec("+"+r+":"+r))
		}
	}
	auth, err := Auth(m.url, credential)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	remote := git.NewRemote(m.repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{m.url}})
	// Tags come only through refspecs: following tags would store tags
	// that were not asked for.
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Auth: auth, Tags: git.NoTags})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return nil
	case errors.Is(err, transport.ErrEmptyRemoteRepository) && len(refs) == 0:
		return nil
	case len(refs) > 0:
		return fmt.Errorf("fetch %s from %s: %w", strings.Join(refs, ", "), Redact(m.url), err)
	}
	return fmt.Errorf("fetch %s: %w", Redact(m.url), err)
}

// Has reports whether commit sha is in the mirror.
func (m *Mirror) Has(sha string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.commit(sha)
	return err == nil
}

// ReadFile returns the content of the file at name (slash separated,
// relative to the repository root) at commit sha, if it has at most
// maxSize bytes. A missing file is an error wrapping ErrNotFound, a larger one
// ErrTooLarge, a commit that was not fetched ErrNoCommit. Directories,
// submodules and symbolic links are errors too.
func (m *Mirror) ReadFile(sha, name string, maxSize int64) ([]byte, error) {
	p, err := treePath(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.commit(sha)
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", short(sha), err)
	}
	e, err := tree.FindEntry(p)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: no file %s at commit %s", ErrNotFound, p, short(sha))
	}
	if err != nil {
		return nil, fmt.Errorf("find %s at commit %s: %w", p, short(sha), err)
	}
	switch {
	case e.Mode == filemode.Dir:
		return nil, fmt.Errorf("read %s at commit %s: a directory, not a file", p, short(sha))
	case e.Mode == filemode.Submodule:
		return nil, fmt.Errorf("read %s at commit %s: a submodule, not a file", p, short(sha))
	case e.Mode == filemode.Symlink:
		return nil, fmt.Errorf("read %s at commit %s: a symbolic link, not a file", p, short(sha))
	}
	blob, err := m.repo.BlobObject(e.Hash)
	if err != nil {
		return nil, fmt.Errorf("read %s at commit %s: %w", p, short(sha), err)
	}
	if blob.Size > maxSize {
		return nil, fmt.Errorf("%w: file %s at commit %s has %d bytes, over the limit of %d", ErrTooLarge, p, short(sha), blob.Size, maxSize)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("read %s at commit %s: %w", p, short(sha), err)
	}
	defer r.Close()
	b := make([]byte, blob.Size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read %s at commit %s: %w", p, short(sha), err)
	}
	return b, nil
}

// Changed lists the paths that differ between commits base and head:
// added, modified and deleted files, and both sides of a rename, sorted,
// at most limit of them; truncated says whether there were more. An empty
// or all-zero base (a new branch) means head's first parent; for a commit
// without parents, all its files have changed.
func (m *Mirror) Changed(base, head string, limit int) (paths []string, truncated bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hc, err := m.commit(head)
	if err != nil {
		return nil, false, err
	}
	var bc *object.Commit
	switch {
	case base == "" || base == plumbing.ZeroHash.String():
		if hc.NumParents() > 0 {
			if bc, err = m.commit(hc.ParentHashes[0].String()); err != nil {
				return nil, false, fmt.Errorf("parent of commit %s: %w", short(head), err)
			}
		}
	default:
		if bc, err = m.commit(base); err != nil {
			return nil, false, err
		}
	}
	var from *object.Tree // nil: the empty tree.
	if bc != nil {
		if from, err = bc.Tree(); err != nil {
			return nil, false, fmt.Errorf("tree of commit %s: %w", short(bc.Hash.String()), err)
		}
	}
	to, err := hc.Tree()
	if err != nil {
		return nil, false, fmt.Errorf("tree of commit %s: %w", short(head), err)
	}
	// Without rename detection a rename is a deletion and an addition,
	// which names both sides.
	changes, err := object.DiffTreeWithOptions(context.Background(), from, to, nil)
	if err != nil {
		return nil, false, fmt.Errorf("changes of commit %s: %w", short(head), err)
	}
	seen := map[string]bool{}
	for _, c := range changes {
		for _, name := range []string{c.From.Name, c.To.Name} {
			if name != "" && !seen[name] {
				seen[name] = true
				paths = append(paths, name)
			}
		}
	}
	slices.Sort(paths)
	limit = max(limit, 0)
	if len(paths) > limit {
		return paths[:limit:limit], true, nil
	}
	return paths, false, nil
}

// commit returns commit sha of the mirror, or an error wrapping ErrNoCommit.
// The caller holds m.mu.
func (m *Mirror) commit(sha string) (*object.Commit, error) {
	if !isCommit(sha) {
		return nil, fmt.Errorf("commit %q: not a full commit id", sha)
	}
	c, err := m.repo.CommitObject(plumbing.NewHash(sha))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoCommit, short(sha))
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", short(sha), err)
	}
	return c, nil
}

// treePath returns name cleaned, refusing absolute paths and paths with
// ".." that could leave the repository.
func treePath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("path %q: absolute; want one relative to the repository root", name)
	}
	if slices.Contains(strings.Split(name, "/"), "..") {
		return "", fmt.Errorf("path %q: must not contain %q", name, "..")
	}
	p := path.Clean(name)
	if p == "." {
		return "", fmt.Errorf("path %q: names no file", name)
	}
	return p, nil
}

// short abbreviates a commit id for messages.
func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
