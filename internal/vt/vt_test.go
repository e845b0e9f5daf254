package vt

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// What Marshal encodes, with the generated methods or without, proto.Unmarshal
// decodes to an equal message.
func TestMarshalDecodesAsProto(t *testing.T) {
	t.Parallel()
	job := &gv1.Job{Id: "j1", Spec: &gv1.JobSpec{Name: "p", Tasks: []*gv1.TaskSpec{{
		Name: "t", Labels: map[string]string{"os": "linux", "pool": "a"},
		Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"true"}}},
	}}}, CreatedAt: timestamppb.New(time.Unix(1700000000, 5))}
	for _, m := range []proto.Message{job, timestamppb.New(time.Unix(1, 2))} {
		data, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(data, got); err != nil || !proto.Equal(got, m) {
			t.Fatalf("%T: decoded %v (%v), want %v", m, got, err, m)
		}
	}
}

// The codec decodes what a caller sends as proto.Unmarshal does: a string
// that is not UTF-8 is refused.
func TestCodecRefusesStringsNotUTF8(t *testing.T) {
	t.Parallel()
	var c Codec
	bad, err := (&gv1.GetJobRequest{JobId: "j\xff"}).MarshalVT() // encoded without the check
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Unmarshal(bad, &gv1.GetJobRequest{}); err == nil {
		t.Fatal("a job_id that is not UTF-8 was decoded")
	}
	good, err := c.Marshal(&gv1.GetJobRequest{JobId: "j1"})
	if err != nil {
		t.Fatal(err)
	}
	var req gv1.GetJobRequest
	if err := c.Unmarshal(good, &req); err != nil || req.GetJobId() != "j1" {
		t.Fatalf("round trip: %v, %q", err, req.GetJobId())
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("a string was encoded as a message")
	}
}
