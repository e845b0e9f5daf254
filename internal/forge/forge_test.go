package forge

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseKind(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Kind{"": None, "gitea": Gitea, " Forgejo ": Forgejo, "GITHUB": GitHub, "gitlab": GitLab, "none": None} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseKind("bitbucket")
	if err == nil || !strings.Contains(err.Error(), "gitea, forgejo, github, gitlab, none") {
		t.Errorf("ParseKind(bitbucket) = %v; want an error naming the forges", err)
	}
}

func TestRepoFromURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in          string
		owner, name string
	}{
		{"https://github.com/gantryci/gantry", "gantryci", "gantry"},
		{"https://github.com/gantryci/gantry.git", "gantryci", "gantry"},
		{"https://github.com/gantryci/gantry/", "gantryci", "gantry"},
		{"http://alice@127.0.0.1:3000/alice/app.git", "alice", "app"},
		{"http://alice:s3cret@127.0.0.1:3000/alice/app.git", "alice", "app"},
		{"git@github.com:gantryci/gantry.git", "gantryci", "gantry"},
		{"gitea.example.com:alice/app", "alice", "app"},
		{"ssh://git@gitea.example.com:2222/alice/app.git", "alice", "app"},
		{"https://gitlab.com/group/sub/project.git", "group/sub", "project"},
		{"git@gitlab.com:group/sub/project.git", "group/sub", "project"},
		{"https://gitlab.com/group/sub/project/-/tree/main", "group/sub", "project"},
	}
	for _, c := range cases {
		got, err := RepoFromURL(c.in)
		want := Repo{Owner: c.owner, Name: c.name, ID: c.owner + "/" + c.name}
		if err != nil || got != want {
			t.Errorf("RepoFromURL(%s) = %+v, %v; want %+v", c.in, got, err, want)
		}
	}
	for _, in := range []string{"", "https://github.com/", "https://github.com/gantry", "git@github.com:gantry", "/srv/git/app.git", "https://host/a/../b", "https://host//b", "file:///srv/git/a/b"} {
		if got, err := RepoFromURL(in); err == nil {
			t.Errorf("RepoFromURL(%q) = %+v; want an error", in, got)
		}
	}
	if _, err := RepoFromURL("https://alice:s3cret@host/app"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error for a URL with a password: %v; want one without the password", err)
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"https://github.com/gantryci/gantry.git":         "https://github.com",
		"http://alice@127.0.0.1:3000/alice/app.git":      "http://127.0.0.1:3000",
		"HTTPS://gitlab.example.com/group/sub/p":         "https://gitlab.example.com",
		"git@github.com:gantryci/gantry.git":             "https://github.com",
		"ssh://git@gitea.example.com:2222/alice/app.git": "https://gitea.example.com",
		"ssh://git@[::1]:2222/alice/app.git":             "https://[::1]",
	}
	for in, want := range cases {
		if got, err := BaseURL(in); err != nil || got != want {
			t.Errorf("BaseURL(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := BaseURL("app.git"); err == nil {
		t.Errorf("BaseURL(app.git) = %q; want an error", got)
	}
}

func TestNewAPIRoot(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind Kind
		base string
		root string
	}{
		{Gitea, "http://127.0.0.1:3000", "http://127.0.0.1:3000/api/v1"},
		{Forgejo, "https://codeberg.org/", "https://codeberg.org/api/v1"},
		{Gitea, "https://example.com/git", "https://example.com/git/api/v1"},
		{Gitea, "https://example.com/api/v1", "https://example.com/api/v1"},
		{GitHub, "https://github.com", "https://api.github.com"},
		{GitHub, "https://api.github.com/", "https://api.github.com"},
		{GitHub, "https://ghe.example.com", "https://ghe.example.com/api/v3"},
		{GitLab, "https://gitlab.com", "https://gitlab.com/api/v4"},
		{GitLab, "http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/v4"},
	}
	for _, c := range cases {
		cl, err := New(c.kind, c.base, "t0ken", nil)
		if err != nil {
			t.Errorf("New(%s, %s): %v", c.kind, c.base, err)
			continue
		}
		if got := apiOf(cl).root; got != c.root {
			t.Errorf("New(%s, %s) calls %s; want %s", c.kind, c.base, got, c.root)
		}
		if hc := apiOf(cl).hc; hc.Timeout != defaultTimeout {
			t.Errorf("New(%s) without a client: timeout %v", c.kind, hc.Timeout)
		}
	}
	for _, c := range []struct {
		kind Kind
		base string
	}{{None, "https://github.com"}, {"svn", "https://x"}, {Gitea, "127.0.0.1:3000"}, {Gitea, "ftp://x"}, {GitHub, "https://u:p@github.com"}} {
		if _, err := New(c.kind, c.base, "t", nil); err == nil {
			t.Errorf("New(%s, %s) made a client; want an error", c.kind, c.base)
		}
	}
	hc := &http.Client{}
	cl, err := New(GitLab, "https://gitlab.com", "", hc)
	if err != nil || apiOf(cl).hc != hc {
		t.Errorf("New with a client: %v; the client given is not used", err)
	}
}

// apiOf reaches a Client's plumbing.
func apiOf(c Client) *api {
	switch c := c.(type) {
	case *gitea:
		return c.api
	case *github:
		return c.api
	case *gitlab:
		return c.api
	}
	panic("unknown client")
}
