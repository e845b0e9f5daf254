package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestGantryBuildsItself runs this repository's own .gantry/pipeline.yaml
// as a project on gantry dev with testenv's buildkitd and registry: unit
// tests, the static binary, the image of deploy/container, the smoke tests
// inside it (gantry version, gantry dev answering) and the push of the
// release tag, checked in the registry by digest. The commit built is the
// repository's HEAD (uncommitted changes are not in it). The unit test
// task runs one package here (GANTRY_UNIT_PACKAGES): the whole suite is
// what CI itself runs.
func TestGantryBuildsItself(t *testing.T) {
	env := needBuildEnv(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("%s is not a Git work tree: %v", root, err)
	}
	sha := strings.TrimSpace(string(head))
	bare := filepath.Join(t.TempDir(), "gantry.git")
	for _, args := range [][]string{
		{"init", "-q", "--bare", bare},
		{"-C", root, "push", "-q", bare, "HEAD:refs/heads/main"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}

	t.Setenv("GANTRY_REGISTRY", env.registry)
	t.Setenv("GANTRY_UNIT_PACKAGES", "./internal/version/")
	d := newDevNode(t)
	d.extra = []string{"--label", "gantry-image=true", "--pass-env", "GANTRY_REGISTRY", "--pass-env", "GANTRY_UNIT_PACKAGES"}
	d.start(t)
	c := rawClient(t, d.grpcAddr)
	mustGantry(t, d.grpcAddr, "project", "create", "gantry", "--repo", "file://"+bare, "--forge", "none", "--poll-every", "1h")
	start := time.Now()
	mustGantry(t, d.grpcAddr, "project", "run", "gantry", "--ref", "main")

	var job *gv1.Job
	waitFor(t, 20*time.Minute, func() (bool, string) {
		bs := buildsOf(builds(t, c, "gantry"), sha)
		if len(bs) == 0 || bs[0].GetBuild().GetJobId() == "" {
			return false, "no build of " + sha
		}
		if e := bs[0].GetBuild().GetError(); e != "" {
			t.Fatalf("build of %s ended without a job: %s", sha, e)
		}
		job = getJob(t, d.grpcAddr, bs[0].GetBuild().GetJobId())
		return fsm.JobFinal(job.State), fmt.Sprintf("job %s %s", job.Id, job.State)
	})
	logs := mustGantry(t, d.grpcAddr, "logs", job.Id).stdout
	if job.State != gv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("Gantry's pipeline: job %s %s\n%s", job.Id, job.State, logs)
	}
	t.Logf("Gantry's own pipeline succeeded in %s", time.Since(start).Round(time.Second))
	for _, tk := range job.Tasks {
		a := tk.Attempts[len(tk.Attempts)-1]
		t.Logf("  %-14s %s", tk.Name, a.FinishedAt.AsTime().Sub(a.StartedAt.AsTime()).Round(10*time.Millisecond))
	}

	for _, want := range []string{
		"[smoke-version] gantry " + sha,
		"[smoke-dev] gantry dev answers: coordinator dev (" + sha + ") leads, agent local is active",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	// The release tag holds the tested image: the registry serves it by
	// the digest the publish task reported, and under the commit's tag.
	out := task(t, job, "publish").Outputs
	digest, ref := out["digest"], out["ref"]
	if !strings.HasPrefix(digest, "sha256:") || ref != env.registry+"/gantry@"+digest {
		t.Fatalf("publish outputs %v; want a digest and %s/gantry@DIGEST", out, env.registry)
	}
	for _, at := range []string{digest, sha} {
		req, _ := http.NewRequest(http.MethodHead, "http://"+env.registry+"/v2/gantry/manifests/"+at, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != digest {
			t.Errorf("registry: gantry manifest %s: %s, digest %q; want %s", at, resp.Status, resp.Header.Get("Docker-Content-Digest"), digest)
		}
	}
	if img := task(t, job, "image").Outputs["digest"]; img != digest {
		t.Logf("candidate %s and release %s differ (image config timestamps)", img, digest)
	}
	_ = os.RemoveAll(filepath.Join(os.TempDir(), "gantry-image", sha))
}
