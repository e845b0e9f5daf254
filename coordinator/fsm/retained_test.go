package fsm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// BenchmarkRetainedJobs applies 100,000 one-task jobs from submit to
// success (RETAINED=N for another count) and reports the heap each ended
// job holds, and how long the state takes to encode (a snapshot) and to
// restore, how long FSM.Snapshot holds the state (Raft applies nothing
// meanwhile) and how long a listing of the newest 100 takes. Run: make
// bench.
func BenchmarkRetainedJobs(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("RETAINED"))
	if n <= 0 {
		n = 100000
	}
	for b.Loop() {
		retained(b, n)
	}
}

func retained(t *testing.B, n int) {
	f := New()
	var idx uint64
	apply := func(cmds ...*gv1.Command) {
		data, _ := proto.Marshal(&gv1.Batch{Commands: cmds})
		idx++
		f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
	}
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := 0; i < n; i += 100 {
		var sub, asg, st, fin []*gv1.Command
		for k := i; k < i+100; k++ {
			id := fmt.Sprintf("06h34byrdh70q9%06d", k)
			spec := &gv1.TaskSpec{Name: "t", Labels: map[string]string{"bench": "fleet"}, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
			at := timestamppb.Now()
			sub = append(sub, &gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
				Id: id, Spec: &gv1.JobSpec{Name: "bench-throughput", Tasks: []*gv1.TaskSpec{spec}}, Owner: "tok-123456",
				Tasks: []*gv1.Task{{Name: "t", Spec: spec}}}}}, Actor: &gv1.Actor{TokenId: "tok-123456", Name: "admin", Peer: "127.0.0.1:34567"}, Method: "SubmitJob"})
			ref := &gv1.TaskRef{JobId: id, Task: "t", Attempt: 1}
			asg = append(asg, &gv1.Command{At: at, Cmd: &gv1.Command_AssignTask{AssignTask: &gv1.AssignTaskCommand{Ref: ref, Agent: "sim-000123"}}})
			st = append(st, &gv1.Command{At: at, Cmd: &gv1.Command_StartTask{StartTask: &gv1.StartTaskCommand{Ref: ref}}})
			fin = append(fin, &gv1.Command{At: at, Cmd: &gv1.Command_FinishTask{FinishTask: &gv1.FinishTaskCommand{Report: &gv1.Report{Ref: ref, Success: true, Agent: "sim-000123", StartedAt: at, FinishedAt: at}}}})
		}
		apply(sub...)
		apply(asg...)
		apply(st...)
		apply(fin...)
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	t0 := time.Now()
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	hold := time.Since(t0)
	t0 = time.Now()
	if page, total, _ := f.JobsPage(nil, 100, 3<<20, gv1.JobView_JOB_VIEW_FULL); len(page) != 100 || total != n {
		t.Fatalf("JobsPage: %d jobs of %d; want 100 of %d", len(page), total, n)
	}
	list := time.Since(t0)
	t0 = time.Now()
	data, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	enc := time.Since(t0)
	t0 = time.Now()
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	t.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "heap-B/job")
	t.ReportMetric(float64(len(data))/float64(n), "encoded-B/job")
	t.ReportMetric(float64(enc.Milliseconds()), "encode-ms")
	t.ReportMetric(float64(hold.Microseconds())/1000, "snapshot-hold-ms")
	t.ReportMetric(float64(list.Microseconds())/1000, "list-100-ms")
	t.ReportMetric(float64(time.Since(t0).Milliseconds()), "restore-ms")
	t.ReportMetric(float64(n), "jobs")
}
