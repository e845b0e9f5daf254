package buildkit

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/moby/buildkit/session/auth"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/gitsrc"
	"github.com/gantryci/gantry/internal/gitsrc/gitsrctest"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestRegistryCredentials(t *testing.T) {
	t.Parallel()
	creds, err := registryCredentials("build.registry_auth", map[string]string{
		"registry.example:5000": "pair", "https://ghcr.io/": "token", "docker.io": "pair",
	}, map[string][]byte{"pair": []byte("me:pa:ss\n"), "token": []byte("tok")})
	if err != nil {
		t.Fatal(err)
	}
	ra := &registryAuth{creds: creds}
	for host, want := range map[string]registryCredential{
		"registry.example:5000": {user: "me", secret: "pa:ss"},
		"ghcr.io":               {user: TokenUser, secret: "tok"},
		"registry-1.docker.io":  {user: "me", secret: "pa:ss"},
		"other.example":         {},
	} {
		got, err := ra.Credentials(context.Background(), &auth.CredentialsRequest{Host: host})
		if err != nil || got.Username != want.user || got.Secret != want.secret {
			t.Errorf("Credentials(%s) = %v, %v; want %+v", host, got, err, want)
		}
	}
	if _, err := registryCredentials("run.registry_auth", map[string]string{"r.example": "nope"}, nil); err == nil ||
		err.Error() != `run.registry_auth[r.example]: secret "nope" is not in the assignment` {
		t.Errorf("missing secret: %v", err)
	}
}

// TestMissingSecretsFailTheJob: a secret the spec names but the assignment
// lacks is a job failure naming the field, before the daemon is contacted
// (this executor's daemon does not exist).
func TestMissingSecretsFailTheJob(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, "unix://"+filepath.Join(t.TempDir(), "nothing.sock"))
	ctx := context.Background()
	have := map[string][]byte{"present": []byte("v")}
	for want, spec := range map[string]*gv1.BuildSpec{
		`build.secrets[npmrc]: secret "npm"`:                   {Context: &gv1.BuildContext{Dir: t.TempDir()}, Secrets: map[string]string{"npmrc": "npm"}},
		`build.registry_auth[r.example]: secret "reg"`:         {Context: &gv1.BuildContext{Dir: t.TempDir()}, RegistryAuth: map[string]string{"r.example": "reg"}},
		`build.context.git.secret: secret "deploy-key"`:        {Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: "https://git.example/r", Secret: "deploy-key"}}},
		`build.secrets[big]: 600000 bytes, more than BuildKit`: {Context: &gv1.BuildContext{Dir: t.TempDir()}, Secrets: map[string]string{"big": "big"}},
	} {
		secrets := map[string][]byte{"present": have["present"], "big": make([]byte, 600000)}
		res := e.Build(ctx, BuildRequest{Spec: spec, Secrets: secrets}, &buffer{})
		if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(fmt.Sprint(res.Err), want) {
			t.Errorf("build: class %s err %v, want a job failure saying %q", res.Class, res.Err, want)
		}
	}
	for want, spec := range map[string]*gv1.RunSpec{
		`run.secret_env[TOKEN]: secret "tok"`:      {Image: "x", Command: []string{"true"}, SecretEnv: map[string]string{"TOKEN": "tok"}},
		`run.registry_auth[r.example]: secret "r"`: {Image: "x", Command: []string{"true"}, RegistryAuth: map[string]string{"r.example": "r"}},
	} {
		res := e.Run(ctx, RunRequest{Spec: spec, Secrets: have}, &buffer{})
		if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(fmt.Sprint(res.Err), want) {
			t.Errorf("run: class %s err %v, want a job failure saying %q", res.Class, res.Err, want)
		}
	}
}

// authRegistry serves an in-memory registry on loopback (buildkitd uses
// the host network) that takes user:password, or a token with TokenUser.
func authRegistry(t *testing.T, user, password, token string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || !(u == user && p == password || u == TokenUser && p == token) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestSecretsReachBuildKit builds from a private Git repository with a
// build secret, pushes to a registry that wants credentials, and runs the
// image from it with a secret in the environment; without the credentials
// the push and the pull fail.
func TestSecretsReachBuildKit(t *testing.T) {
	t.Parallel()
	env := needEnv(t)
	const (
		buildSecret = "build-s3cret-value"
		gitToken    = "git-t0ken-value"
		regToken    = "reg-t0ken-value"
	)
	nonce := fmt.Sprint(time.Now().UnixNano())
	url, commit := gitRepo(t, map[string]string{"Dockerfile": fmt.Sprintf(`FROM scratch
COPY busybox /bin/busybox
RUN --mount=type=secret,id=tok,required=true ["/bin/busybox", "sh", "-c", "test \"$(/bin/busybox cat /run/secrets/tok)\" = %s && echo secret-ok %s"]
`, buildSecret, nonce)})
	dir := strings.TrimPrefix(url, "file://")
	private := gitsrctest.Serve(t, filepath.Dir(dir), gitsrc.TokenUser, gitToken) + "/" + filepath.Base(dir)
	reg := authRegistry(t, "pusher", "push-pa55", regToken)
	e := newExecutor(t, env.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	secrets := map[string][]byte{
		"git": []byte(gitToken + "\n"), "tok": []byte(buildSecret), "push": []byte("pusher:push-pa55"),
		"pull": []byte(regToken), "env": []byte("env-s3cret"),
	}
	spec := &gv1.BuildSpec{
		Context:      &gv1.BuildContext{Git: &gv1.GitSource{Url: private, Revision: "main", Secret: "git"}},
		Secrets:      map[string]string{"tok": "tok"},
		Push:         reg + "/private:" + nonce,
		RegistryAuth: map[string]string{reg: "push"},
	}
	var log buffer
	res := e.Build(ctx, BuildRequest{Spec: spec, Name: "t-secret", Secrets: secrets}, &log)
	if !res.Success() {
		t.Fatalf("build: %v (class %s)\n%s", res.Err, res.Class, log.String())
	}
	if res.Outputs[OutputRevision] != commit || !strings.Contains(log.String(), "secret-ok "+nonce) {
		t.Fatalf("outputs %v; log:\n%s", res.Outputs, log.String())
	}
	ref := res.Outputs[OutputRef]

	noAuth := proto.Clone(spec).(*gv1.BuildSpec)
	noAuth.RegistryAuth = nil
	noAuth.Push = reg + "/private:other-" + nonce
	if res := e.Build(ctx, BuildRequest{Spec: noAuth, Name: "t-secret-2", Secrets: secrets}, &buffer{}); res.Success() {
		t.Fatal("push without credentials succeeded")
	}

	// Without credentials first: once pulled, the daemon caches the image.
	run := &gv1.RunSpec{Image: ref, Command: []string{"/bin/busybox", "sh", "-c", `test "$TOKEN" = env-s3cret && echo env-ok`},
		SecretEnv: map[string]string{"TOKEN": "env"}}
	if res := e.Run(ctx, RunRequest{Spec: run, Secrets: secrets}, &buffer{}); res.Success() || !strings.Contains(fmt.Sprint(res.Err), "401") {
		t.Fatalf("pull without credentials: %v, want 401 Unauthorized", res.Err)
	}
	var out buffer
	run.RegistryAuth = map[string]string{reg: "pull"}
	if res := e.Run(ctx, RunRequest{Spec: run, Secrets: secrets}, &out); !res.Success() || !strings.Contains(out.String(), "env-ok") {
		t.Fatalf("run: %v (class %s)\n%s", res.Err, res.Class, out.String())
	}
}
