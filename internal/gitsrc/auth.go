package gitsrc

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// TokenUser is the user name sent with a credential that is a token alone:
// GitHub takes it for personal and installation tokens, GitLab and Gitea
// take any name with a personal access token.
const TokenUser = "x-access-token"

// ErrCredential is wrapped when a credential does not fit its repository
// URL or cannot be read.
var ErrCredential = errors.New("unusable git credential")

// Auth returns how to authenticate to the repository at rawURL with
// credential, the value of a secret:
//
//   - an SSH private key (PEM, "-----BEGIN ..."), for ssh:// and scp-like
//     (user@host:path) URLs; the user is the URL's, or "git". The server's
//     host key is checked against the files of $SSH_KNOWN_HOSTS, else
//     ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts of the agent.
//     Passphrase-protected keys are not supported.
//   - "username:password", for http(s):// URLs (HTTP Basic).
//   - a token alone, for http(s):// URLs: Basic with user TokenUser.
//
// Surrounding white space (a trailing newline) is ignored. An empty
// credential means none: nil, nil.
func Auth(rawURL string, credential []byte) (transport.AuthMethod, error) {
	cred := bytes.TrimSpace(credential)
	if len(cred) == 0 {
		return nil, nil
	}
	ep, err := transport.NewEndpoint(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: repository URL %s: %w", ErrCredential, Redact(rawURL), err)
	}
	isKey := bytes.HasPrefix(cred, []byte("-----BEGIN"))
	switch ep.Protocol {
	case "ssh":
		if !isKey {
			return nil, fmt.Errorf("%w: %s is an SSH URL; the secret must be an SSH private key (PEM)", ErrCredential, Redact(rawURL))
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, cred, "")
		if err != nil {
			// The parse error says what is wrong with the key, never what it holds.
			return nil, fmt.Errorf("%w: SSH private key: %w", ErrCredential, err)
		}
		return keys, nil
	case "http", "https":
		if isKey {
			return nil, fmt.Errorf("%w: the secret is an SSH key but %s is an HTTP URL; use an ssh:// or user@host:path URL", ErrCredential, Redact(rawURL))
		}
		user, pass, ok := strings.Cut(string(cred), ":")
		if !ok {
			user, pass = TokenUser, string(cred)
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	}
	return nil, fmt.Errorf("%w: %s URLs take no credentials", ErrCredential, ep.Protocol)
}

// Redact returns rawURL without the credentials of its user information,
// for messages: "https://user:***@host/repo", and "https://***@host/repo"
// for a user alone, which may be a token. Other URLs (scp-like SSH ones,
// whose user is no secret) are returned as they are.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil || u.Host == "" {
		return rawURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "***")
	} else if u.Scheme == "http" || u.Scheme == "https" {
		u.User = url.User("***")
	} else {
		return rawURL
	}
	return strings.NewReplacer("%2A%2A%2A", "***").Replace(u.String())
}
