package buildkit

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth"
	"github.com/moby/buildkit/session/secrets"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/internal/gitsrc"
)

// maxBuildSecret is the largest build secret BuildKit takes (its
// secretsprovider.MaxSecretSize).
const maxBuildSecret = 500 << 10

// lookup returns the value of secret name, referred to by field, from the
// values of an assignment.
func lookup(values map[string][]byte, field, name string) ([]byte, error) {
	v, ok := values[name]
	if !ok {
		return nil, fmt.Errorf("%s: secret %q is not in the assignment", field, name)
	}
	return v, nil
}

// buildSecrets returns the values of BuildSpec.secrets by BuildKit secret
// id, for RUN --mount=type=secret,id=ID.
func buildSecrets(ids map[string]string, values map[string][]byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if id == "" {
			return nil, fmt.Errorf("build.secrets: empty secret id")
		}
		v, err := lookup(values, fmt.Sprintf("build.secrets[%s]", id), ids[id])
		if err != nil {
			return nil, err
		}
		if len(v) > maxBuildSecret {
			return nil, fmt.Errorf("build.secrets[%s]: %d bytes, more than BuildKit takes (%d)", id, len(v), maxBuildSecret)
		}
		out[id] = v
	}
	return out, nil
}

// registryCredential is what BuildKit sends to one registry.
type registryCredential struct {
	user, secret string
}

// TokenUser is the user name sent to a registry with a credential that is
// a token alone: the one Git clones use too (gitsrc.TokenUser). BuildKit's
// HTTP Basic needs a user name, and registries that take a token alone
// (ghcr.io, GitLab and Gitea with a personal access token) accept any.
const TokenUser = gitsrc.TokenUser

// registryCredentials reads registry_auth (registry host -> secret name) of
// field. A secret holds "username:password", or a token alone, which is
// sent with the user name TokenUser. Registries that want a particular
// user name with a token (Docker Hub, gcr.io's "oauth2accesstoken", ECR's
// "AWS", Quay's "$oauthtoken") take "username:token".
func registryCredentials(field string, hosts map[string]string, values map[string][]byte) (map[string]registryCredential, error) {
	out := map[string]registryCredential{}
	for _, host := range slices.Sorted(maps.Keys(hosts)) {
		key := registryHost(host)
		if key == "" {
			return nil, fmt.Errorf("%s: empty registry host", field)
		}
		v, err := lookup(values, fmt.Sprintf("%s[%s]", field, host), hosts[host])
		if err != nil {
			return nil, err
		}
		v = bytes.TrimSpace(v)
		user, secret, ok := strings.Cut(string(v), ":")
		if !ok {
			user, secret = TokenUser, string(v)
		}
		out[key] = registryCredential{user: user, secret: secret}
	}
	return out, nil
}

// registryHost normalizes a registry host as BuildKit asks for it: no
// scheme or path, and Docker Hub's names mapped to the host it pulls from.
func registryHost(h string) string {
	h = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(h), "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "docker.io", "index.docker.io":
		return "registry-1.docker.io"
	}
	return h
}

// registryAuth answers the daemon's requests for registry credentials
// (session auth) from a fixed map. It offers no token authority, so the
// daemon fetches registry tokens itself with these credentials; nothing is
// read from or written to the agent's Docker configuration.
type registryAuth struct {
	auth.UnimplementedAuthServer
	creds map[string]registryCredential
}

// Register implements session.Attachable.
func (a *registryAuth) Register(s *grpc.Server) { auth.RegisterAuthServer(s, a) }

// Credentials implements auth.AuthServer; a host without credentials gets
// none (anonymous access).
func (a *registryAuth) Credentials(_ context.Context, req *auth.CredentialsRequest) (*auth.CredentialsResponse, error) {
	c, ok := a.creds[registryHost(req.GetHost())]
	if !ok {
		return &auth.CredentialsResponse{}, nil
	}
	return &auth.CredentialsResponse{Username: c.user, Secret: c.secret}, nil
}

// buildSecretStore answers the daemon's requests for build secrets
// (RUN --mount=type=secret) from a fixed map, as BuildKit's
// secretsprovider.FromMap does.
type buildSecretStore struct {
	secrets.UnimplementedSecretsServer
	values map[string][]byte
}

// Register implements session.Attachable.
func (s *buildSecretStore) Register(srv *grpc.Server) { secrets.RegisterSecretsServer(srv, s) }

// GetSecret implements secrets.SecretsServer.
func (s *buildSecretStore) GetSecret(_ context.Context, req *secrets.GetSecretRequest) (*secrets.GetSecretResponse, error) {
	v, ok := s.values[req.GetID()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "secret %s not found", req.GetID())
	}
	return &secrets.GetSecretResponse{Data: v}, nil
}

// attachables returns the session attachables of a solve: build secrets and
// registry credentials, each only when there are some.
func attachables(buildSecrets map[string][]byte, creds map[string]registryCredential) []session.Attachable {
	var out []session.Attachable
	if len(buildSecrets) > 0 {
		out = append(out, &buildSecretStore{values: buildSecrets})
	}
	if len(creds) > 0 {
		out = append(out, &registryAuth{creds: creds})
	}
	return out
}
