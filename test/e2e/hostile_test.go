package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// rssMB reads a process's resident set size in MiB.
func rssMB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// aliasBomb is a ~100 KB pipeline whose one large string is referenced
// thousands of times through YAML aliases: hundreds of MB once expanded.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("name: bomb\nx-big: &big \"" + strings.Repeat("A", 32<<10) + "\"\ntasks:\n  - name: t\n    exec:\n      command: [")
	for i := range 12000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*big")
	}
	b.WriteString("]\n")
	return b.String()
}

// TestDevHostileInput sends what an attacker would: a YAML alias bomb, a
// template that defines and nests templates, and a forged report with huge
// outputs for a running task. Each is refused with an error naming the
// limit; the coordinator stays small, keeps its state, and other jobs run.
func TestDevHostileInput(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	pid := d.proc.cmd.Process.Pid

	long := writePipeline(t, "name: long\ntasks:\n  - name: sleep\n    exec: {command: [\"sleep\", \"60\"]}\n")
	longID := strings.TrimSpace(mustGantry(t, d.grpcAddr, "submit", "-f", long).stdout)

	// A YAML alias bomb.
	bomb := writePipeline(t, aliasBomb())
	if fi, _ := os.Stat(bomb); fi.Size() > 200<<10 {
		t.Fatalf("alias bomb is %d bytes; meant to be about 100 KB", fi.Size())
	}
	start := time.Now()
	r := gantry(t, d.grpcAddr, "submit", "-f", bomb)
	took := time.Since(start)
	if r.code == 0 || !strings.Contains(r.stderr, "expands") {
		t.Errorf("alias bomb: want a refusal saying how far it expands, got %s", r)
	}
	t.Logf("alias bomb refused in %s: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))

	// Templates that define and call templates.
	tmpl := writePipeline(t, `name: nest
tasks:
  - name: build
    exec: {command: ["true"]}
  - name: run
    needs: [build]
    run:
      image: '{{define "a"}}xxxxxxxxxx{{end}}{{define "b"}}{{template "a"}}{{template "a"}}{{end}}{{template "b"}}'
      command: ["true"]
`)
	if r := gantry(t, d.grpcAddr, "submit", "-f", tmpl); r.code == 0 || !strings.Contains(r.stderr, "run.image") {
		t.Errorf("nested templates: want a refusal naming run.image, got %s", r)
	}

	// A forged report for the running task, with 900 KB of outputs.
	waitFor(t, 30*time.Second, func() (bool, string) {
		j := getJob(t, d.grpcAddr, longID)
		return task(t, j, "sleep").GetState() == gv1.TaskState_TASK_STATE_RUNNING, j.GetState().String()
	})
	// gantry dev's NATS takes only its CA's certificates: a client
	// without one is refused; the forgery comes with an agent
	// certificate of the local agent's name (dev's agent connects in
	// process, with no certificate), as a compromised agent's would.
	tlsDir := filepath.Join(d.dataDir, "tls")
	if nc, err := nats.Connect("nats://"+d.natsAddr, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("gantry dev's NATS accepted a client without a certificate")
	}
	material, err := pki.EnsureLocal(tlsDir, "dev")
	if err == nil {
		err = material.EnsureAgent("local")
	}
	if err != nil {
		t.Fatal(err)
	}
	agentCert, agentKey := material.AgentCertFiles("local")
	nc, err := nats.Connect("nats://"+d.natsAddr, nats.RootCAs(material.CAFile()), nats.ClientCert(agentCert, agentKey),
		nats.CustomInboxPrefix(subject.AgentInbox("local")), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	outputs := map[string]string{}
	for i := range 225 {
		outputs[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 4000)
	}
	forged, _ := proto.Marshal(&gv1.Report{
		Ref:     &gv1.TaskRef{JobId: longID, Task: "sleep", Attempt: 1},
		Success: true, Outputs: outputs, Agent: "local",
		StartedAt: timestamppb.Now(), FinishedAt: timestamppb.Now(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject.New("default").Report("local"), forged)
	if err != nil {
		t.Fatalf("forged report: %v", err)
	}
	var reply gv1.ReportReply
	if err := proto.Unmarshal(msg.Data, &reply); err != nil || reply.Accepted {
		t.Errorf("forged report with 900 KB of outputs: want refused, got accepted=%v reason=%q (%v)", reply.Accepted, reply.Reason, err)
	} else {
		t.Logf("forged report refused: %s", reply.Reason)
	}
	j := getJob(t, d.grpcAddr, longID)
	if st := task(t, j, "sleep").GetState(); st != gv1.TaskState_TASK_STATE_RUNNING || len(task(t, j, "sleep").GetOutputs()) > 0 {
		t.Errorf("after the forged report: task %s with %d outputs, want still running with none", st, len(task(t, j, "sleep").GetOutputs()))
	}

	// The coordinator stayed up and small, and other work runs.
	if mb := rssMB(t, pid); mb > 400 {
		t.Errorf("gantry dev RSS %d MiB after the hostile input, want under 400", mb)
	} else {
		t.Logf("gantry dev RSS after the hostile input: %d MiB", mb)
	}
	hello := writePipeline(t, helloPipeline)
	if r := gantry(t, d.grpcAddr, "submit", "-f", hello, "--wait"); r.code != 0 {
		t.Errorf("a normal job after the hostile input: %s", r)
	}
	mustGantry(t, d.grpcAddr, "cancel", longID)
}
