package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The tests in this file run projects (pipelines as code) against a real
// Gitea, a real buildkitd and a real registry:
//
//	eval "$(scripts/testenv.sh up buildkit registry gitea)"
//
// Without GANTRY_TEST_GITEA_URL (or the build services) they are skipped.

// gitea is the test forge and its admin.
type gitea struct {
	url, user, token string
}

func needGitea(t *testing.T) gitea {
	t.Helper()
	g := gitea{os.Getenv("GANTRY_TEST_GITEA_URL"), os.Getenv("GANTRY_TEST_GITEA_USER"), os.Getenv("GANTRY_TEST_GITEA_TOKEN")}
	if g.url == "" || g.user == "" || g.token == "" {
		t.Skip("GANTRY_TEST_GITEA_URL, _USER and _TOKEN are not set (eval \"$(scripts/testenv.sh up gitea)\")")
	}
	return g
}

// api calls Gitea's API as token's user; want is the expected status.
func (g gitea) api(t *testing.T, token, method, path string, body any, want int) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, g.url+"/api/v1"+path, rd)
	req.Header.Set("Authorization", "token "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("gitea %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("gitea %s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	out := map[string]any{}
	_ = json.Unmarshal(data, &out)
	return out
}

// status is the combined commit status of sha and its statuses.
func (g gitea) status(t *testing.T, repo, sha string) (state string, statuses []map[string]any) {
	t.Helper()
	m := g.api(t, g.token, "GET", "/repos/"+repo+"/commits/"+sha+"/status", nil, 200)
	list, _ := m["statuses"].([]any) // null before the first status
	for _, s := range list {
		statuses = append(statuses, s.(map[string]any))
	}
	state, _ = m["state"].(string)
	return state, statuses
}

// pushURL is a repository's clone URL with user and token in it.
func (g gitea) pushURL(user, token, repo string) string {
	u, _ := url.Parse(g.url + "/" + repo + ".git")
	u.User = url.UserPassword(user, token)
	return u.String()
}

func randName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// projectPipeline builds the repository's image, tests inside it, checks
// the checkout in an exec task (slowly when the commit has a file named
// slow) and has a step only pushes to main run.
func projectPipeline(registry, image string) string {
	return fmt.Sprintf(`name: ci
tasks:
  - name: image
    build:
      dockerfile: Dockerfile
      push: "%s/%s:{{ .Revision }}"
  - name: test
    needs: [image]
    run:
      image: "{{ .Tasks.image.Outputs.ref }}"
      command: ["/bin/busybox", "sh", "-c", "/bin/busybox cat /src.txt; echo branch={{ .Branch }} event={{ .Event }}"]
  - name: unit
    exec:
      shell: "if [ -f slow ]; then sleep 120; fi; test -f Dockerfile && echo checkout-ok branch=$GANTRY_BRANCH commit=$GANTRY_COMMIT"
  - name: release-note
    needs: [test, unit]
    when: {branches: [main], events: [push]}
    exec:
      shell: "echo releasing $GANTRY_COMMIT"
`, registry, image)
}

// builds returns a project's builds, newest first.
func builds(t *testing.T, c gv1.GantryServiceClient, name string) []*gv1.BuildSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.GetProject(ctx, &gv1.GetProjectRequest{Name: name})
	if err != nil {
		t.Fatalf("get project %s: %v", name, err)
	}
	return resp.GetProject().GetBuilds()
}

// buildsOf returns the builds of commit sha.
func buildsOf(all []*gv1.BuildSummary, sha string) []*gv1.BuildSummary {
	var out []*gv1.BuildSummary
	for _, b := range all {
		if b.GetBuild().GetTrigger().GetSha() == sha {
			out = append(out, b)
		}
	}
	return out
}

// waitBuild waits until commit sha has a build whose job is in state st
// (unspecified: any build) and returns it.
func waitBuild(t *testing.T, c gv1.GantryServiceClient, project, sha string, st gv1.JobState, timeout time.Duration) *gv1.BuildSummary {
	t.Helper()
	var got *gv1.BuildSummary
	waitFor(t, timeout, func() (bool, string) {
		bs := buildsOf(builds(t, c, project), sha)
		if len(bs) == 0 {
			return false, "no build of " + sha
		}
		got = bs[0]
		if e := got.GetBuild().GetError(); e != "" {
			t.Fatalf("build %d of %s ended without a job: %s", got.GetBuild().GetNumber(), sha, e)
		}
		return st == gv1.JobState_JOB_STATE_UNSPECIFIED || got.GetState() == st, fmt.Sprintf("build %d: job %q in %s", got.GetBuild().GetNumber(), got.GetBuild().GetJobId(), got.GetState())
	})
	return got
}

// waitStatus waits until Gitea shows state for sha in context ctx and
// returns that status.
func (g gitea) waitStatus(t *testing.T, repo, sha, ctx, state string, timeout time.Duration) map[string]any {
	t.Helper()
	var got map[string]any
	waitFor(t, timeout, func() (bool, string) {
		_, sts := g.status(t, repo, sha)
		for _, s := range sts {
			if s["context"] == ctx {
				got = s
				return s["status"] == state, fmt.Sprintf("%s of %s: %v (%v)", ctx, sha, s["status"], s["description"])
			}
		}
		return false, "no status " + ctx + " on " + sha
	})
	return got
}

func TestProjectBuildsEveryChangeAndReportsToGitea(t *testing.T) {
	env := needBuildEnv(t)
	g := needGitea(t)
	name := randName("web")
	repoPath := g.user + "/" + name
	g.api(t, g.token, "POST", "/user/repos", map[string]any{"name": name, "default_branch": "main"}, 201)

	r := newRepo(t)
	r.write("Dockerfile", helloDockerfile)
	r.write("src.txt", "first\n")
	if err := os.MkdirAll(filepath.Join(r.dir, ".gantry"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.write(".gantry/pipeline.yaml", projectPipeline(env.registry, name))
	r.commit("first")
	r.git("push", "-q", g.pushURL(g.user, g.token, repoPath), "main")

	d := startDev(t)
	c := rawClient(t, d.grpcAddr)
	gantryStdin(t, d.grpcAddr, g.token, "secret", "set", "FORGE_TOKEN")
	created := &gv1.CreateProjectResponse{}
	if err := decodeJSON(gantry(t, d.grpcAddr, "-o", "json", "project", "create", "web", "--repo", g.url+"/"+repoPath+".git",
		"--forge", "gitea", "--credential", "FORGE_TOKEN", "--poll-every", "1h"), created); err != nil {
		t.Fatal(err)
	}
	if !created.GetHookRegistered() || created.GetHookError() != "" {
		t.Fatalf("webhook not registered on Gitea: %v", created)
	}
	hooks := g.hooks(t, repoPath)
	if len(hooks) != 1 || !strings.HasSuffix(hooks[0]["config"].(map[string]any)["url"].(string), "/hooks/git") {
		t.Fatalf("Gitea hooks = %v, want one pointing at /hooks/git", hooks)
	}

	push := func(msg string, change func()) (string, time.Time) {
		t.Helper()
		change()
		sha := r.commit(msg)
		r.git("push", "-q", g.pushURL(g.user, g.token, repoPath), "main")
		return sha, time.Now()
	}

	// A push: the webhook triggers a build of the pipeline at that commit;
	// Gitea shows its status, linked to the job.
	sha1, pushed := push("second", func() { r.write("src.txt", "second\n") })
	b := waitBuild(t, c, "web", sha1, gv1.JobState_JOB_STATE_UNSPECIFIED, 30*time.Second)
	started := time.Now()
	if tr := b.GetBuild().GetTrigger(); tr.GetSource() != "webhook" || tr.GetEvent() != "push" || tr.GetBranch() != "main" {
		t.Fatalf("build of the push: trigger %v, want a webhook push to main", tr)
	}
	b = waitBuild(t, c, "web", sha1, gv1.JobState_JOB_STATE_SUCCEEDED, 3*time.Minute)
	done := time.Now()
	st := g.waitStatus(t, repoPath, sha1, "gantry/web", "success", time.Minute)
	if link, _ := st["target_url"].(string); !strings.HasSuffix(link, "/jobs/"+b.GetBuild().GetJobId()) {
		t.Errorf("status links to %q, want the job %s", link, b.GetBuild().GetJobId())
	}
	t.Logf("push -> build recorded %.2fs, push -> pipeline succeeded %.2fs (build, test in image, exec in checkout)",
		started.Sub(pushed).Seconds(), done.Sub(pushed).Seconds())
	logs := mustGantry(t, d.grpcAddr, "logs", b.GetBuild().GetJobId()).stdout
	for _, want := range []string{"[test] second", "[test] branch=main event=push", "[unit] checkout-ok branch=main commit=" + sha1, "[release-note] releasing " + sha1} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	// A redelivered webhook answers the same build: one signed as Gitea
	// signs, and Gitea's own test delivery (the branch head again).
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": sha1,
		"commits":    []any{},
		"repository": map[string]any{"clone_url": g.url + "/" + repoPath + ".git", "full_name": repoPath},
		"pusher":     map[string]any{"login": g.user},
	})
	mac := hmac.New(sha256.New, []byte(created.GetWebhookSecret()))
	mac.Write(body)
	req, _ := http.NewRequest("POST", baseURL(d.httpAddr)+"/hooks/git", bytes.NewReader(body))
	req.Header.Set("X-Gitea-Event", "push")
	req.Header.Set("X-Gitea-Signature", hex.EncodeToString(mac.Sum(nil)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(answer), fmt.Sprintf(`"build":%d`, b.GetBuild().GetNumber())) {
		t.Fatalf("redelivered push: %d %s, want build %d again", resp.StatusCode, answer, b.GetBuild().GetNumber())
	}
	req.Header.Set("X-Gitea-Signature", strings.Repeat("0", 64))
	req.Body = io.NopCloser(bytes.NewReader(body))
	if resp, err = httpClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("push with a wrong signature: %v %v, want 401", resp.StatusCode, err)
	}
	resp.Body.Close()
	g.api(t, g.token, "POST", fmt.Sprintf("/repos/%s/hooks/%v/tests", repoPath, hooks[0]["id"]), nil, 204)
	holdsFor(t, 2*time.Second, func() (bool, string) {
		n := len(buildsOf(builds(t, c, "web"), sha1))
		return n == 1, fmt.Sprintf("%d builds of %s after a redelivery", n, sha1)
	})

	// A newer push to main cancels the older build still running.
	slowSHA, _ := push("slow", func() { r.write("slow", "x\n") })
	slow := waitBuild(t, c, "web", slowSHA, gv1.JobState_JOB_STATE_RUNNING, time.Minute)
	waitFor(t, time.Minute, func() (bool, string) {
		j := getJob(t, d.grpcAddr, slow.GetBuild().GetJobId())
		return task(t, j, "unit").GetState() == gv1.TaskState_TASK_STATE_RUNNING, "unit of the slow build not running yet"
	})
	fastSHA, _ := push("fast again", func() { r.git("rm", "-q", "slow") })
	waitBuild(t, c, "web", slowSHA, gv1.JobState_JOB_STATE_CANCELED, time.Minute)
	waitBuild(t, c, "web", fastSHA, gv1.JobState_JOB_STATE_SUCCEEDED, 3*time.Minute)
	st = g.waitStatus(t, repoPath, slowSHA, "gantry/web", "error", time.Minute)
	if !strings.Contains(fmt.Sprint(st["description"]), "superseded") {
		t.Errorf("status of the superseded commit: %v", st["description"])
	}

	// A webhook lost while the coordinator was down: the poll when it
	// leads again builds the commit, once.
	d.proc.stop(t, 10*time.Second)
	lostSHA, _ := push("while down", func() { r.write("src.txt", "while down\n") })
	d.start(t)
	c = rawClient(t, d.grpcAddr)
	lost := waitBuild(t, c, "web", lostSHA, gv1.JobState_JOB_STATE_SUCCEEDED, 3*time.Minute)
	if src := lost.GetBuild().GetTrigger().GetSource(); src != "poll" {
		t.Errorf("build of the commit pushed while down came from %q, want poll", src)
	}
	g.waitStatus(t, repoPath, lostSHA, "gantry/web", "success", time.Minute)
	if n := len(buildsOf(builds(t, c, "web"), lostSHA)); n != 1 {
		t.Errorf("%d builds of %s, want 1", n, lostSHA)
	}

	t.Run("fork pull request waits for approval and gets no secrets", func(t *testing.T) {
		forkUser := randName("contrib")
		g.api(t, g.token, "POST", "/admin/users", map[string]any{
			"username": forkUser, "password": "contrib-pass-1", "email": forkUser + "@example.invalid", "must_change_password": false,
		}, 201)
		tok := g.userToken(t, forkUser, "contrib-pass-1")
		g.api(t, tok, "POST", "/repos/"+repoPath+"/forks", map[string]any{}, 202)
		fork := forkUser + "/" + name
		r.git("checkout", "-q", "-b", "feature")
		r.write("src.txt", "from a fork\n")
		prSHA := r.commit("fork change")
		r.git("push", "-q", g.pushURL(forkUser, tok, fork), "feature")
		r.git("checkout", "-q", "main")
		g.api(t, tok, "POST", "/repos/"+repoPath+"/pulls", map[string]any{
			"head": forkUser + ":feature", "base": "main", "title": "a change from a fork",
		}, 201)

		var held *gv1.BuildSummary
		waitFor(t, 30*time.Second, func() (bool, string) {
			bs := buildsOf(builds(t, c, "web"), prSHA)
			if len(bs) == 0 {
				return false, "no build of the pull request"
			}
			held = bs[0]
			return held.GetBuild().GetAwaitingApproval(), fmt.Sprintf("build %v", held.GetBuild())
		})
		if tr := held.GetBuild().GetTrigger(); !tr.GetUntrusted() || tr.GetEvent() != "pull_request" || tr.GetPullRequest() == 0 {
			t.Fatalf("pull request build trigger %v, want an untrusted pull request", tr)
		}
		if held.GetBuild().GetJobId() != "" {
			t.Fatalf("held build has a job: %v", held.GetBuild())
		}
		g.waitStatus(t, repoPath, prSHA, "gantry/web", "pending", 30*time.Second)
		n := fmt.Sprint(held.GetBuild().GetNumber())
		mustGantry(t, d.grpcAddr, "build", "approve", "web", n)
		b := waitBuild(t, c, "web", prSHA, gv1.JobState_JOB_STATE_SUCCEEDED, 3*time.Minute)
		j := getJob(t, d.grpcAddr, b.GetBuild().GetJobId())
		for _, tk := range []string{"image", "test", "release-note"} {
			if got := task(t, j, tk); got.GetState() != gv1.TaskState_TASK_STATE_SKIPPED {
				t.Errorf("task %s of the fork build: %s, want skipped", tk, got.GetState())
			}
		}
		if got := task(t, j, "image").GetSkipReason(); !strings.Contains(got, "untrusted") {
			t.Errorf("image skipped because %q", got)
		}
		if got := task(t, j, "unit"); got.GetState() != gv1.TaskState_TASK_STATE_SUCCEEDED {
			t.Errorf("unit of the fork build: %s %s", got.GetState(), got.GetError())
		}
		if b.GetBuild().GetApprovedBy().GetName() == "" {
			t.Errorf("approval not recorded: %v", b.GetBuild())
		}
	})

	// Deleting the project removes its webhook from Gitea.
	mustGantry(t, d.grpcAddr, "project", "delete", "web")
	if hooks := g.hooks(t, repoPath); len(hooks) != 0 {
		t.Errorf("hooks left after delete: %v", hooks)
	}
}

// hooks lists a repository's webhooks.
func (g gitea) hooks(t *testing.T, repo string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", g.url+"/api/v1/repos/"+repo+"/hooks", nil)
	req.Header.Set("Authorization", "token "+g.token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// userToken makes an API token for a user from its password.
func (g gitea) userToken(t *testing.T, user, password string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"name": "e2e", "scopes": []string{"all"}})
	req, _ := http.NewRequest("POST", g.url+"/api/v1/users/"+user+"/tokens", bytes.NewReader(b))
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 201 {
		t.Fatalf("token for %s: %d %v", user, resp.StatusCode, out)
	}
	return out["sha1"].(string)
}

// TestPushToProductionThroughGitOps follows one commit the whole way: a
// push to the application's repository on Gitea is built into an image,
// tested inside it and promoted (its digest committed to the private
// config repository on Gitea); the GitOps application following that
// repository, told by its own Gitea webhook, deploys the digest to the
// real control plane; the commit shows success on Gitea.
func TestPushToProductionThroughGitOps(t *testing.T) {
	env := needBuildEnv(t)
	g := needGitea(t)
	k := needKube(t)
	name := randName("shop")
	appRepo, cfgRepo := g.user+"/"+name, g.user+"/"+name+"-config"
	g.api(t, g.token, "POST", "/user/repos", map[string]any{"name": name, "default_branch": "main"}, 201)
	g.api(t, g.token, "POST", "/user/repos", map[string]any{"name": name + "-config", "default_branch": "main", "private": true}, 201)
	image := env.registry + "/" + name
	cfgURL := g.url + "/" + cfgRepo + ".git"

	cfg := &repo{tb: t, dir: t.TempDir()}
	cfg.git("init", "-q", "-b", "main")
	if err := os.MkdirAll(filepath.Join(cfg.dir, "k8s"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.write("k8s/web.yaml", webManifest(image+":v0", 1, ""))
	cfg.commit("web at v0")
	cfg.git("push", "-q", g.pushURL(g.user, g.token, cfgRepo), "main")

	r := newRepo(t)
	r.write("Dockerfile", helloDockerfile)
	r.write("src.txt", "v1\n")
	if err := os.MkdirAll(filepath.Join(r.dir, ".gantry"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.write(".gantry/pipeline.yaml", fmt.Sprintf(`name: ci
tasks:
  - name: image
    build: {dockerfile: Dockerfile, push: "%[1]s:{{ .Revision }}"}
  - name: test
    needs: [image]
    run: {image: "{{ .Tasks.image.Outputs.ref }}", command: ["/bin/busybox", "cat", "/src.txt"]}
  - name: promote
    needs: [test]
    when: {branches: [main], events: [push]}
    promote:
      repo: {url: "%[2]s", credential: FORGE_TOKEN}
      branch: main
      file: k8s/web.yaml
      image: {name: "%[1]s", ref: "{{ .Tasks.image.Outputs.ref }}"}
      message: "ship {{ .Branch }}"
`, image, cfgURL))
	r.commit("first")
	r.git("push", "-q", g.pushURL(g.user, g.token, appRepo), "main")

	d := startKubeDev(t, k)
	c := rawClient(t, d.grpcAddr)
	ns := k.namespace(t, "loop")
	gantryStdin(t, d.grpcAddr, g.token, "secret", "set", "FORGE_TOKEN")
	mustGantry(t, d.grpcAddr, "project", "create", "shop", "--repo", g.url+"/"+appRepo+".git",
		"--forge", "gitea", "--credential", "FORGE_TOKEN", "--poll-every", "1h")
	// The application follows the private config repository with the
	// same credential and hears of its pushes from its own webhook: the
	// poll interval is an hour.
	var app gv1.CreateAppResponse
	if err := decodeJSON(gantry(t, d.grpcAddr, "-o", "json", "app", "create", "shop", "--repo", cfgURL, "--path", "k8s", "--revision", "main",
		"--cluster", "local", "--namespace", ns, "--auto-sync", "--forge", "gitea", "--credential", "FORGE_TOKEN",
		"--poll-interval", "1h", "--health-timeout", "60s"), &app); err != nil {
		t.Fatal(err)
	}
	if !app.GetHookRegistered() || len(g.hooks(t, cfgRepo)) != 1 {
		t.Fatalf("config repository webhook not registered: %v, hooks %v", &app, g.hooks(t, cfgRepo))
	}
	k.waitImage(t, ns, image+":v0", 90*time.Second)

	// The push.
	r.write("src.txt", "v2\n")
	sha := r.commit("v2")
	r.git("push", "-q", g.pushURL(g.user, g.token, appRepo), "main")
	pushed := time.Now()
	waitBuild(t, c, "shop", sha, gv1.JobState_JOB_STATE_UNSPECIFIED, 30*time.Second)
	started := time.Since(pushed)

	// The digest reaches the cluster.
	var deployed string
	waitFor(t, 4*time.Minute, func() (bool, string) {
		dep := k.deployment(t, ns)
		if dep == nil {
			return false, "deployment web missing"
		}
		deployed = dep.Spec.Template.Spec.Containers[0].Image
		avail := false
		for _, cnd := range dep.Status.Conditions {
			if cnd.Type == "Available" && cnd.Status == "True" {
				avail = true
			}
		}
		fresh := dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas == *dep.Spec.Replicas
		return strings.HasPrefix(deployed, image+"@sha256:") && avail && fresh, fmt.Sprintf("image %s available=%v", deployed, avail)
	})
	live := time.Since(pushed)
	t.Logf("push -> build started %.2fs; push -> new digest Available in the cluster %.2fs", started.Seconds(), live.Seconds())

	// It is the digest the build pushed and the test ran in; the
	// promotion's commit says where it came from; the application's deploy
	// is of that commit.
	b := waitBuild(t, c, "shop", sha, gv1.JobState_JOB_STATE_SUCCEEDED, time.Minute)
	j := getJob(t, d.grpcAddr, b.GetBuild().GetJobId())
	if ref := task(t, j, "image").GetOutputs()["ref"]; ref != deployed {
		t.Fatalf("deployed %s, the build pushed %s", deployed, ref)
	}
	promoted := task(t, j, "promote").GetOutputs()
	if promoted["changed"] != "true" || promoted["commit"] == "" {
		t.Fatalf("promote outputs %v", promoted)
	}
	head := g.api(t, g.token, "GET", "/repos/"+cfgRepo+"/git/commits/"+promoted["commit"], nil, 200)
	msg := fmt.Sprint(head["commit"].(map[string]any)["message"])
	for _, want := range []string{"ship main", "Source-Commit: " + sha, "Gantry-Job: " + j.GetId(), strings.TrimPrefix(deployed, image+"@")} {
		if !strings.Contains(msg, want) {
			t.Errorf("promotion commit message lacks %q:\n%s", want, msg)
		}
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		rec := lastRecord(t, d.grpcAddr, "shop")
		return rec != nil && rec.Revision == promoted["commit"] && rec.Result == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED, fmt.Sprintf("last deploy %v", rec)
	})
	st := g.waitStatus(t, appRepo, sha, "gantry/shop", "success", time.Minute)
	if link, _ := st["target_url"].(string); !strings.HasSuffix(link, "/jobs/"+j.GetId()) {
		t.Errorf("status links to %q, want the job %s", link, j.GetId())
	}
	// The token is in no log line of the job.
	logs := mustGantry(t, d.grpcAddr, "logs", j.GetId()).stdout
	if strings.Contains(logs, g.token) {
		t.Fatalf("the forge token appears in the job's logs")
	}

	// Deleting the application removes its webhook.
	mustGantry(t, d.grpcAddr, "app", "delete", "shop")
	if hooks := g.hooks(t, cfgRepo); len(hooks) != 0 {
		t.Errorf("config repository hooks left after delete: %v", hooks)
	}
}
