package client_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// pipeline is a one-task pipeline that runs script.
func pipeline(name, script string) *gv1.SubmitJobRequest {
	return &gv1.SubmitJobRequest{SpecYaml: "name: " + name + "\ntasks:\n  - name: main\n    exec: {shell: " + strconv.Quote(script) + "}\n"}
}

func liveClient(t *testing.T) *client.Client {
	t.Helper()
	return newClient(t, []string{liveAddr}, client.WithToken(liveToken))
}

// stdout keeps the standard output of log chunks.
func stdout(buf *bytes.Buffer) func(*gv1.LogChunk) error {
	return func(ch *gv1.LogChunk) error {
		if ch.Stream == gv1.LogStream_LOG_STREAM_STDOUT {
			buf.Write(ch.Data)
		}
		return nil
	}
}

func TestSubmitIsIdempotent(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	req := pipeline("twice", "true")
	first, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if req.IdempotencyKey == "" {
		t.Fatal("Submit left the request without an idempotency key")
	}
	again, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Job.Id != first.Job.Id || !again.Existing {
		t.Errorf("second submit: job %s (existing %v), want %s again", again.Job.Id, again.Existing, first.Job.Id)
	}
	if _, err := c.Watch(ctx, first.Job.Id, nil); err != nil {
		t.Errorf("wait for job: %v", err)
	}
}

func TestWatchThenReplayLogs(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	resp, err := c.Submit(ctx, pipeline("replay", "echo one; echo two"))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Job.Id
	var states []gv1.JobState
	final, err := c.Watch(ctx, id, func(j *gv1.Job) error {
		states = append(states, j.State)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if final.State != gv1.JobState_JOB_STATE_SUCCEEDED || states[len(states)-1] != final.State {
		t.Fatalf("final %s after %v, want succeeded seen last", final.State, states)
	}
	for _, follow := range []bool{false, true} {
		var out bytes.Buffer
		// Both end by themselves: the job is final.
		if err := c.Logs(ctx, id, "main", follow, stdout(&out)); err != nil {
			t.Fatalf("Logs(follow %v): %v", follow, err)
		}
		if out.String() != "one\ntwo\n" {
			t.Errorf("Logs(follow %v) = %q", follow, out.String())
		}
	}
	err = c.Logs(ctx, id, "nosuchtask", true, stdout(new(bytes.Buffer)))
	if status.Code(err) != codes.NotFound {
		t.Errorf("Logs of an unknown task = %v, want NotFound", err)
	}
	if got, err := c.Job(ctx, id); err != nil || got.State != final.State {
		t.Errorf("Job = %v, %v", got.GetState(), err)
	}
	jobs, err := c.Jobs(ctx, 1000, gv1.JobState_JOB_STATE_SUCCEEDED)
	found := false
	for _, j := range jobs {
		found = found || j.Id == id
	}
	if err != nil || !found {
		t.Errorf("Jobs(succeeded) = %d jobs without %s, %v", len(jobs), id, err)
	}
}

func TestFollowJob(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	resp, err := c.Submit(ctx, pipeline("follow", "echo start; sleep 0.3; echo end"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	jobs := 0
	final, err := c.FollowJob(ctx, resp.Job.Id, func(*gv1.Job) error { jobs++; return nil }, stdout(&out))
	if err != nil {
		t.Fatal(err)
	}
	if final.State != gv1.JobState_JOB_STATE_SUCCEEDED || jobs == 0 {
		t.Errorf("final %s after %d job updates", final.State, jobs)
	}
	if out.String() != "start\nend\n" {
		t.Errorf("followed log %q", out.String())
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	resp, err := c.Submit(ctx, pipeline("cancel", "sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cancel(ctx, resp.Job.Id, "test"); err != nil {
		t.Fatal(err)
	}
	final, err := c.Watch(ctx, resp.Job.Id, nil)
	if err != nil || final.State != gv1.JobState_JOB_STATE_CANCELED {
		t.Fatalf("after cancel: %v, %v", final.GetState(), err)
	}
}

func TestAgentsClusterAndQueue(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	agents, err := c.Agents(ctx)
	if err != nil || len(agents) != 1 || agents[0].Info.Name != "local" {
		t.Fatalf("Agents = %v, %v; want local", agents, err)
	}
	st, err := c.Cluster(ctx)
	if err != nil || st.LeaderId != "dev" {
		t.Errorf("Cluster = %v, %v; want leader dev", st, err)
	}
	if _, err := c.Queue(ctx); err != nil {
		t.Errorf("Queue: %v", err)
	}
	if err := c.Drain(ctx, "nosuchagent"); err == nil || status.Code(err) == codes.Unavailable {
		t.Errorf("Drain of an unknown agent = %v, want a refusal", err)
	}
}

func TestFailoverFromADeadCoordinator(t *testing.T) {
	t.Parallel()
	c := newClient(t, []string{deadAddr(t), liveAddr}, client.WithToken(liveToken))
	ctx := testContext(t)
	resp, err := c.Submit(ctx, pipeline("failover", "echo survived"))
	if err != nil {
		t.Fatalf("Submit with the first coordinator dead: %v", err)
	}
	var out bytes.Buffer
	if _, err := c.FollowJob(ctx, resp.Job.Id, nil, stdout(&out)); err != nil {
		t.Fatal(err)
	}
	if out.String() != "survived\n" {
		t.Errorf("log %q", out.String())
	}
	if c.Index() == 0 {
		t.Error("no state index seen")
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	info, err := c.SetSecret(ctx, "client-test", []byte("v"), "job:nothing")
	if err != nil || info.Name != "client-test" || info.Scope != "job:nothing" {
		t.Fatalf("SetSecret = %v, %v", info, err)
	}
	has := func() bool {
		secrets, err := c.Secrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if s.Name == "client-test" {
				return true
			}
		}
		return false
	}
	if !has() {
		t.Error("Secrets does not list the secret set")
	}
	if err := c.DeleteSecret(ctx, "client-test"); err != nil {
		t.Fatal(err)
	}
	if has() {
		t.Error("Secrets lists a deleted secret")
	}
}

func TestApps(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	spec := &gv1.AppSpec{Name: "web", Repo: "file:///nonexistent/web.git", Cluster: "local", Namespace: "shop"}
	if _, err := c.CreateApp(ctx, spec); err != nil {
		t.Fatal(err)
	}
	apps, err := c.Apps(ctx)
	if err != nil || len(apps) != 1 || apps[0].Spec.Name != "web" {
		t.Fatalf("Apps = %v, %v", apps, err)
	}
	if resp, err := c.App(ctx, "web"); err != nil || resp.App.Spec.Namespace != "shop" {
		t.Errorf("App = %v, %v", resp, err)
	}
	if h, err := c.AppHistory(ctx, "web"); err != nil || len(h) != 0 {
		t.Errorf("AppHistory = %v, %v; want none", h, err)
	}
	if d, err := c.AppDrift(ctx, "web"); err != nil || d != nil {
		t.Errorf("AppDrift = %v, %v; want none yet", d, err)
	}
	// The repository cannot be read: refused at once, not retried.
	if _, err := c.SyncApp(ctx, "web"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("SyncApp = %v, want FailedPrecondition", err)
	}
	if _, err := c.RollbackApp(ctx, "web", "abc"); err == nil {
		t.Error("RollbackApp to a revision never deployed succeeded")
	}
	if err := c.DeleteApp(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.App(ctx, "web"); status.Code(err) != codes.NotFound {
		t.Errorf("App after DeleteApp = %v, want NotFound", err)
	}
}

func TestSnapshotSaveAndRestore(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	resp, err := c.Submit(ctx, pipeline("snapshot", "true"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch(ctx, resp.Job.Id, nil); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	n, err := c.SaveSnapshot(ctx, &snap)
	if err != nil || n == 0 || n != int64(snap.Len()) {
		t.Fatalf("SaveSnapshot = %d bytes (%d written), %v", n, snap.Len(), err)
	}

	fresh, err := startCoordinator(filepath.Join(t.TempDir(), "fresh"), testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Close() })
	fc := newClient(t, []string{fresh.GRPCAddr()}, client.WithToken(liveToken))
	// The leader commits its bootstrap token a moment after it is elected.
	if err := waitUntil(10*time.Second, func() bool { _, err := fc.WhoAmI(ctx); return err == nil }); err != nil {
		t.Fatalf("the new cluster's bootstrap token: %v", err)
	}
	got, err := fc.RestoreSnapshot(ctx, &snap)
	if err != nil {
		t.Fatal(err)
	}
	if got.Jobs == 0 {
		t.Errorf("restored %d jobs", got.Jobs)
	}
	if _, err := fc.Job(ctx, resp.Job.Id); err != nil {
		t.Errorf("job %s after restore: %v", resp.Job.Id, err)
	}
}

func TestWatchEndsWithTheContext(t *testing.T) {
	t.Parallel()
	c := liveClient(t)
	ctx := testContext(t)
	resp, err := c.Submit(ctx, pipeline("slow", "sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Cancel(context.Background(), resp.Job.Id, "test over") })
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Watch(wctx, resp.Job.Id, nil); err != context.DeadlineExceeded {
		t.Errorf("Watch = %v, want the context's deadline", err)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	admin := liveClient(t)
	ctx := testContext(t)
	if _, err := admin.BootstrapACL(ctx); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("BootstrapACL of a cluster with tokens = %v, want FailedPrecondition", err)
	}
	created, err := admin.CreateToken(ctx, "reader", gv1.Role_ROLE_VIEWER, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reader := newClient(t, []string{liveAddr}, client.WithToken(created.Secret))
	if me, err := reader.WhoAmI(ctx); err != nil || me.Name != "reader" || me.Role != gv1.Role_ROLE_VIEWER {
		t.Errorf("WhoAmI = %v, %v", me, err)
	}
	if _, err := reader.Submit(ctx, pipeline("refused", "true")); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Submit by a viewer = %v, want PermissionDenied", err)
	}
	tokens, err := admin.Tokens(ctx)
	listed := false
	for _, tk := range tokens {
		listed = listed || tk.Id == created.Token.Id
	}
	if err != nil || !listed {
		t.Errorf("Tokens = %d tokens without %s, %v", len(tokens), created.Token.Id, err)
	}
	if err := admin.RevokeToken(ctx, created.Token.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.WhoAmI(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("WhoAmI with a revoked token = %v, want Unauthenticated", err)
	}
	events, err := admin.Audit(ctx, time.Now().Add(-time.Hour), 0)
	audited := false
	for _, e := range events {
		audited = audited || (e.Method == "RevokeToken" && strings.Contains(e.Target, created.Token.Id))
	}
	if err != nil || !audited {
		t.Errorf("Audit = %d events without the revoke, %v", len(events), err)
	}
}
