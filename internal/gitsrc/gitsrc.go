// Package gitsrc checks out and resolves revisions of Git repositories, for
// the executors that take their input from Git and for the GitOps
// controller that follows branches.
package gitsrc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Clone checks out revision (a branch, tag or commit; empty means the
// remote's HEAD) of the repository at url into dir and returns the commit.
// credential authenticates to a private repository (see Auth); nil means
// none. Errors name the URL without its credentials (Redact).
func Clone(ctx context.Context, url, revision, dir string, credential []byte) (string, error) {
	auth, err := Auth(url, credential)
	if err != nil {
		return "", err
	}
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: url, Auth: auth, NoCheckout: true, Tags: git.AllTags})
	if errors.Is(err, plumbing.ErrReferenceNotFound) && revision != "" {
		// The remote's HEAD names a branch it does not have (a bare
		// repository made with another default branch than the one
		// pushed): fetch its branches and tags without HEAD.
		repo, err = fetchAll(ctx, url, dir, auth)
	}
	url = Redact(url)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", url, err)
	}
	rev := revision
	if rev == "" {
		rev = "HEAD"
	}
	var h *plumbing.Hash
	for _, r := range []string{rev, "origin/" + rev, "refs/tags/" + rev} {
		if h, err = repo.ResolveRevision(plumbing.Revision(r)); err == nil {
			break
		}
	}
	if err != nil && isCommit(revision) {
		// A pull request's head is on no branch: fetch the forges' pull
		// and merge request refs and look again.
		ferr := repo.FetchContext(ctx, &git.FetchOptions{Auth: auth, RefSpecs: []config.RefSpec{
			"+refs/pull/*/head:refs/remotes/origin/pull/*",
			"+refs/merge-requests/*/head:refs/remotes/origin/merge-requests/*",
		}})
		if ferr == nil || errors.Is(ferr, git.NoErrAlreadyUpToDate) || errors.Is(ferr, git.NoMatchingRefSpecError{}) {
			if _, cerr := repo.CommitObject(plumbing.NewHash(revision)); cerr == nil {
				hash := plumbing.NewHash(revision)
				h, err = &hash, nil
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("resolve revision %q of %s: %w", revision, url, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("worktree of %s: %w", url, err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: *h, Force: true}); err != nil {
		return "", fmt.Errorf("check out %s at %s: %w", url, h, err)
	}
	return h.String(), nil
}

// fetchAll makes dir a repository with url as its origin and fetches every
// branch (as origin/NAME) and tag, whatever the remote's HEAD says.
func fetchAll(ctx context.Context, url, dir string, auth transport.AuthMethod) (*git.Repository, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		return nil, err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		return nil, err
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{Auth: auth, Tags: git.AllTags, RefSpecs: []config.RefSpec{
		"+refs/heads/*:refs/remotes/origin/*",
	}})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, err
	}
	return repo, nil
}

// ErrNoRevision is returned by Resolve when the remote has no such branch or tag.
var ErrNoRevision = errors.New("no such branch or tag")

// Resolve asks the remote which commit revision (a branch or tag; empty
// means HEAD) points to, without fetching objects. A full commit id is
// returned as it is.
func Resolve(ctx context.Context, url, revision string) (string, error) {
	return ResolveAuth(ctx, url, revision, nil)
}

// ResolveAuth is Resolve for a private repository: credential is as for
// Clone.
func ResolveAuth(ctx context.Context, url, revision string, credential []byte) (string, error) {
	if isCommit(revision) {
		return revision, nil
	}
	auth, err := Auth(url, credential)
	if err != nil {
		return "", err
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	url = Redact(url)
	if err != nil {
		return "", fmt.Errorf("list %s: %w", url, err)
	}
	want := []string{"HEAD"}
	if revision != "" {
		want = []string{revision, "refs/heads/" + revision, "refs/tags/" + revision}
	}
	byName := map[string]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name().String()] = r
	}
	for _, w := range want {
		r, ok := byName[w]
		if !ok {
			continue
		}
		if r.Type() == plumbing.SymbolicReference {
			if t, ok := byName[r.Target().String()]; ok {
				r = t
			} else {
				continue
			}
		}
		// An annotated tag's peeled commit is listed as NAME^{}.
		if p, ok := byName[r.Name().String()+"^{}"]; ok {
			r = p
		}
		return r.Hash().String(), nil
	}
	return "", fmt.Errorf("%s of %s: %w", displayRev(revision), url, ErrNoRevision)
}

func displayRev(r string) string {
	if r == "" {
		return "HEAD"
	}
	return r
}

func isCommit(s string) bool {
	if len(s) != 40 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
