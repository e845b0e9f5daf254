package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const helloPipeline = `name: e2e-hello
tasks:
  - name: build
    exec:
      command: ["sh", "-c", "echo build-out-1; echo build-out-2"]
  - name: check
    needs: [build]
    exec:
      shell: 'echo "greeting=$GREETING"; echo "task=$GANTRY_TASK"'
      env: {GREETING: hello-e2e}
`

func TestDevSubmitWaitAndLogs(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	file := writePipeline(t, helloPipeline)

	sub := gantry(t, d.grpcAddr, "submit", "-f", file, "--wait")
	if sub.code != 0 {
		t.Fatalf("submit --wait of a succeeding pipeline: want exit 0, got %s", sub)
	}
	buildLines := []string{"[build] build-out-1", "[build] build-out-2"}
	checkLines := []string{"[check] greeting=hello-e2e", "[check] task=check"}
	for _, want := range append(buildLines, checkLines...) {
		if !hasLine(sub.stdout, want) {
			t.Errorf("submit --wait stdout lacks line %q:\n%s", want, sub.stdout)
		}
	}
	// check needs build, so all of build's output comes first.
	if b, c := lineIndex(sub.stdout, buildLines[1]), lineIndex(sub.stdout, checkLines[0]); b >= 0 && c >= 0 && b > c {
		t.Errorf("submit --wait printed check's output before build's:\n%s", sub.stdout)
	}
	if !strings.Contains(sub.stderr, "succeeded") {
		t.Errorf("submit --wait stderr does not report success:\n%s", sub.stderr)
	}

	jobs := listJobs(t, d.grpcAddr)
	if len(jobs) != 1 {
		t.Fatalf("gantry jobs: want 1 job, got %d: %v", len(jobs), jobs)
	}
	id := jobs[0].GetId()
	if id == "" || jobs[0].GetSpec().GetName() != "e2e-hello" {
		t.Fatalf("gantry jobs: want job e2e-hello with an id, got %v", jobs[0])
	}
	if !strings.Contains(sub.stderr, "job "+id+" submitted") {
		t.Errorf("submit --wait stderr does not name job %s:\n%s", id, sub.stderr)
	}

	// The whole job's log, replayed, prefixed with task names.
	all := mustGantry(t, d.grpcAddr, "logs", id)
	for _, want := range append(buildLines, checkLines...) {
		if !hasLine(all.stdout, want) {
			t.Errorf("gantry logs %s lacks line %q:\n%s", id, want, all.stdout)
		}
	}

	// One task's log: only its output, without prefix.
	one := mustGantry(t, d.grpcAddr, "logs", id, "check")
	for _, want := range []string{"greeting=hello-e2e", "task=check"} {
		if !hasLine(one.stdout, want) {
			t.Errorf("gantry logs %s check lacks line %q:\n%s", id, want, one.stdout)
		}
	}
	for _, l := range lines(one.stdout) {
		if strings.HasPrefix(l, "[") || strings.Contains(l, "build-out") {
			t.Errorf("gantry logs %s check: line %q is prefixed or not check's:\n%s", id, l, one.stdout)
		}
	}

	j := getJob(t, d.grpcAddr, id)
	if j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("job %s: want JOB_STATE_SUCCEEDED, got %s", id, j.GetState())
	}
	for _, name := range []string{"build", "check"} {
		tk := task(t, j, name)
		if tk.GetState() != gv1.TaskState_TASK_STATE_SUCCEEDED || tk.GetAttempt() != 1 || tk.GetAgent() != "local" {
			t.Errorf("task %s: want succeeded in attempt 1 on local, got %s attempt %d on %q",
				name, tk.GetState(), tk.GetAttempt(), tk.GetAgent())
		}
	}

	code, metrics, err := httpGet("http://" + d.httpAddr + "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	if !strings.Contains(metrics, "gantry_raft_apply_seconds") {
		t.Errorf("/metrics lacks gantry_raft_apply_seconds")
	}
	if !strings.Contains(metrics, "gantry_queue_depth") && !strings.Contains(metrics, "gantry_dispatch_latency_seconds") {
		t.Errorf("/metrics lacks both gantry_queue_depth and gantry_dispatch_latency_seconds")
	}
}

func TestDevFailingJobExitCode(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	file := writePipeline(t, `name: e2e-fail
tasks:
  - name: flaky
    retries: 1
    exec:
      shell: 'echo "attempt $GANTRY_ATTEMPT"; exit 3'
  - name: after
    needs: [flaky]
    exec:
      shell: 'echo should-not-run'
`)
	sub := gantry(t, d.grpcAddr, "submit", "-f", file, "--wait")
	if sub.code != 1 {
		t.Fatalf("submit --wait of a failing pipeline: want exit 1, got %s", sub)
	}
	for _, want := range []string{"[flaky] attempt 1", "[flaky] attempt 2"} {
		if !hasLine(sub.stdout, want) {
			t.Errorf("submit --wait stdout lacks line %q:\n%s", want, sub.stdout)
		}
	}
	if strings.Contains(sub.stdout, "should-not-run") {
		t.Errorf("the task after the failed one ran:\n%s", sub.stdout)
	}

	jobs := listJobs(t, d.grpcAddr)
	if len(jobs) != 1 {
		t.Fatalf("gantry jobs: want 1 job, got %d", len(jobs))
	}
	j := getJob(t, d.grpcAddr, jobs[0].GetId())
	if j.GetState() != gv1.JobState_JOB_STATE_FAILED {
		t.Errorf("job: want JOB_STATE_FAILED, got %s", j.GetState())
	}
	flaky := task(t, j, "flaky")
	if flaky.GetState() != gv1.TaskState_TASK_STATE_FAILED {
		t.Errorf("flaky: want TASK_STATE_FAILED, got %s", flaky.GetState())
	}
	if flaky.GetAttempt() != 2 || len(flaky.GetAttempts()) != 2 {
		t.Errorf("flaky: want attempt 2 with 2 attempts recorded, got attempt %d, %d recorded", flaky.GetAttempt(), len(flaky.GetAttempts()))
	}
	if flaky.GetExitCode() != 3 {
		t.Errorf("flaky: want exit code 3, got %d", flaky.GetExitCode())
	}
	for _, a := range flaky.GetAttempts() {
		if a.GetResult() != gv1.TaskState_TASK_STATE_FAILED || a.GetExitCode() != 3 {
			t.Errorf("flaky attempt %d: want failed with exit 3, got %s exit %d", a.GetNumber(), a.GetResult(), a.GetExitCode())
		}
	}
	if after := task(t, j, "after"); after.GetState() != gv1.TaskState_TASK_STATE_SKIPPED || after.GetAttempt() != 0 {
		t.Errorf("after: want TASK_STATE_SKIPPED never attempted, got %s attempt %d", after.GetState(), after.GetAttempt())
	}
}

func TestDevRejectsMalformedPipeline(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	cases := []struct {
		name, yaml string
		want       []string // all in stderr
	}{
		{
			name: "unknown field",
			yaml: `name: bad-field
tasks:
  - name: a
    comand: [echo, hi]
    exec: {shell: "echo hi"}
`,
			want: []string{"line 4", "tasks[0].comand", "unknown field"},
		},
		{
			name: "cycle",
			yaml: `name: bad-cycle
tasks:
  - name: a
    needs: [c]
    exec: {shell: "true"}
  - name: b
    needs: [a]
    exec: {shell: "true"}
  - name: c
    needs: [b]
    exec: {shell: "true"}
`,
			want: []string{"line ", "needs", "cycle"},
		},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			file := writePipeline(t, tc.yaml)
			r := gantry(t, d.grpcAddr, "submit", "-f", file)
			if r.code == 0 {
				t.Fatalf("submit of a pipeline with a %s: want a non-zero exit, got %s", tc.name, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("submit stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if !strings.Contains(r.stderr, file) {
				t.Errorf("submit stderr does not name the file %s:\n%s", file, r.stderr)
			}
			if strings.TrimSpace(r.stdout) != "" {
				t.Errorf("submit printed a job id for a rejected pipeline: %q", r.stdout)
			}
		})
	}
	if jobs := listJobs(t, d.grpcAddr); len(jobs) != 0 {
		t.Errorf("rejected pipelines created jobs: %v", jobs)
	}
}

func TestDevRestartKeepsJobs(t *testing.T) {
	skipShort(t)
	d := newDevNode(t)
	d.start(t)
	file := writePipeline(t, helloPipeline)
	mustGantry(t, d.grpcAddr, "submit", "-f", file, "--wait")
	jobs := listJobs(t, d.grpcAddr)
	if len(jobs) != 1 || jobs[0].GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("before restart: want one succeeded job, got %v", jobs)
	}
	first := jobs[0].GetId()

	old := d.proc
	if !old.stop(t, 30*time.Second) {
		t.Fatalf("dev did not exit within 30s of SIGTERM")
	}
	if c := old.exitCode(); c != 0 {
		t.Errorf("dev after SIGTERM: want exit 0, got %d (%v)", c, old.err)
	}

	d.start(t) // same data dir and ports
	waitFor(t, 30*time.Second, func() (bool, string) {
		jobs, err := tryListJobs(t, d.grpcAddr)
		if err != nil {
			return false, err.Error()
		}
		for _, j := range jobs {
			if j.GetId() == first && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED {
				return true, ""
			}
		}
		return false, fmt.Sprintf("after restart, job %s is not listed as succeeded: %v", first, jobs)
	})
	// The table form too.
	tbl := mustGantry(t, d.grpcAddr, "jobs")
	if !strings.Contains(tbl.stdout, first) || !strings.Contains(tbl.stdout, "succeeded") {
		t.Errorf("gantry jobs after restart does not list %s as succeeded:\n%s", first, tbl.stdout)
	}
	logs := mustGantry(t, d.grpcAddr, "logs", first, "check")
	if !hasLine(logs.stdout, "greeting=hello-e2e") {
		t.Errorf("logs of job %s lost in the restart:\n%s", first, logs.stdout)
	}

	sub := gantry(t, d.grpcAddr, "submit", "-f", file, "--wait")
	if sub.code != 0 || !hasLine(sub.stdout, "[check] greeting=hello-e2e") {
		t.Fatalf("a new job after restart: want success with its output, got %s", sub)
	}
	jobs = listJobs(t, d.grpcAddr)
	if len(jobs) != 2 {
		t.Fatalf("after a second job: want 2 jobs, got %d: %v", len(jobs), jobs)
	}
	for _, j := range jobs {
		if j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("job %s: want JOB_STATE_SUCCEEDED, got %s", j.GetId(), j.GetState())
		}
	}
}

func TestDevCancel(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	marker := filepath.Join(dir, "got-sigterm")
	pidFile := filepath.Join(dir, "pid")
	file := writePipeline(t, fmt.Sprintf(`name: e2e-cancel
tasks:
  - name: sleeper
    exec:
      shell: |
        echo $$ > "$PIDFILE"
        trap 'touch "$MARKER"; exit 0' TERM
        touch "$READY"
        echo sleeping
        sleep 300 &
        wait
      env: {READY: %q, MARKER: %q, PIDFILE: %q}
`, ready, marker, pidFile))
	// Should cancel fail to stop the shell, do not leave it behind.
	t.Cleanup(func() {
		if _, err := os.Stat(marker); err == nil {
			return
		}
		data, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		var pid int
		if _, err := fmt.Sscan(string(data), &pid); err == nil && pid > 1 {
			killGroup(pid)
		}
	})

	sub := mustGantry(t, d.grpcAddr, "submit", "-f", file)
	id := strings.TrimSpace(sub.stdout)
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("submit without --wait: want the job id on stdout, got %q", sub.stdout)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		j, err := tryGetJob(t, d.grpcAddr, id)
		if err != nil {
			return false, err.Error()
		}
		st := task(t, j, "sleeper").GetState()
		return st == gv1.TaskState_TASK_STATE_RUNNING, "sleeper is " + st.String()
	})
	// RUNNING is committed once the agent accepts; wait for the shell to
	// have set its trap before canceling.
	waitFor(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(ready)
		return err == nil, "the task has not set its trap: " + fmt.Sprint(err)
	})

	c := mustGantry(t, d.grpcAddr, "cancel", id)
	if !strings.Contains(c.stdout, "canceled") {
		t.Errorf("gantry cancel: want the job reported canceled, got %s", c)
	}
	j := getJob(t, d.grpcAddr, id)
	if j.GetState() != gv1.JobState_JOB_STATE_CANCELED {
		t.Errorf("job after cancel: want JOB_STATE_CANCELED, got %s", j.GetState())
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(marker)
		return err == nil, "the task's process got no SIGTERM: " + fmt.Sprint(err)
	})
	waitFor(t, 30*time.Second, func() (bool, string) {
		j, err := tryGetJob(t, d.grpcAddr, id)
		if err != nil {
			return false, err.Error()
		}
		st := task(t, j, "sleeper").GetState()
		return st == gv1.TaskState_TASK_STATE_CANCELED && j.GetState() == gv1.JobState_JOB_STATE_CANCELED,
			fmt.Sprintf("job %s, sleeper %s", j.GetState(), st)
	})
	// The agent holds nothing any more.
	waitFor(t, 30*time.Second, func() (bool, string) {
		agents, err := listAgents(t, d.grpcAddr)
		if err != nil {
			return false, err.Error()
		}
		for _, a := range agents {
			if a.GetInfo().GetName() == "local" {
				return len(a.GetRunning()) == 0, fmt.Sprintf("local still holds %v", a.GetRunning())
			}
		}
		return false, "agent local not listed"
	})
}

func TestDevDrain(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	agentState := func() (gv1.AgentState, bool, error) {
		agents, err := listAgents(t, d.grpcAddr)
		if err != nil {
			return 0, false, err
		}
		for _, a := range agents {
			if a.GetInfo().GetName() == "local" {
				return a.GetState(), true, nil
			}
		}
		return 0, false, nil
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		st, ok, err := agentState()
		return err == nil && ok && st == gv1.AgentState_AGENT_STATE_ACTIVE, fmt.Sprintf("local: %s listed=%v err=%v", st, ok, err)
	})
	tbl := mustGantry(t, d.grpcAddr, "agents")
	if !strings.Contains(tbl.stdout, "local") || !strings.Contains(tbl.stdout, "active") {
		t.Errorf("gantry agents does not list local as active:\n%s", tbl.stdout)
	}

	if r := gantry(t, d.grpcAddr, "drain", "nosuchagent"); r.code == 0 {
		t.Errorf("drain of an unknown agent: want a non-zero exit, got %s", r)
	}
	mustGantry(t, d.grpcAddr, "drain", "local")
	waitFor(t, 30*time.Second, func() (bool, string) {
		st, ok, err := agentState()
		if err != nil {
			return false, err.Error()
		}
		return !ok || st == gv1.AgentState_AGENT_STATE_DRAINING || st == gv1.AgentState_AGENT_STATE_LOST,
			fmt.Sprintf("local is still %s", st)
	})

	file := writePipeline(t, `name: e2e-after-drain
tasks:
  - name: orphan
    exec: {shell: "echo ran"}
`)
	id := strings.TrimSpace(mustGantry(t, d.grpcAddr, "submit", "-f", file).stdout)
	pending := func() (bool, string) {
		j, err := tryGetJob(t, d.grpcAddr, id)
		if err != nil {
			return false, err.Error()
		}
		tk := task(t, j, "orphan")
		return tk.GetState() == gv1.TaskState_TASK_STATE_PENDING && tk.GetAttempt() == 0 && tk.GetAgent() == "",
			fmt.Sprintf("orphan is %s, attempt %d on %q", tk.GetState(), tk.GetAttempt(), tk.GetAgent())
	}
	// With no active agent the task must wait, not be assigned.
	holdsFor(t, 3*time.Second, pending)
	if j := getJob(t, d.grpcAddr, id); j.GetState() != gv1.JobState_JOB_STATE_PENDING {
		t.Errorf("job with no agent to run it: want JOB_STATE_PENDING, got %s", j.GetState())
	}

	// With its agent drained, dev still stops promptly on SIGTERM. (Today
	// newDevCmd has already taken the agent's result from agentDone and
	// then waits 30s more for it, ignoring the signal.)
	if d.proc.exited() {
		t.Fatalf("dev exited after its agent drained: %v", d.proc.err)
	}
	if !d.proc.stop(t, 15*time.Second) {
		t.Errorf("dev with a drained agent did not exit within 15s of SIGTERM")
	}
}
