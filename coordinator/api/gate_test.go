package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// applyAt applies a harmless command at index i.
func applyAt(t *testing.T, f *fsm.FSM, i uint64) {
	t.Helper()
	data, err := proto.Marshal(&gv1.Batch{Commands: []*gv1.Command{{At: timestamppb.Now(), Cmd: &gv1.Command_DeleteApp{DeleteApp: &gv1.DeleteAppCommand{Name: "none"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: data})
}

func TestGate(t *testing.T) {
	f := fsm.New()
	s := New(Deps{Log: zap.NewNop(), FSM: f})
	applyAt(t, f, 5)
	ready := func() (bool, string) { return true, "" }
	const read = "/gantry.v1.GantryService/ListJobs"
	withMin := func(n string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(MinIndexHeader, n))
	}

	// Not caught up: reads refused with the reason, writes pass.
	notReady := func() (bool, string) { return false, "catching up after a restart" }
	if err := s.gate(context.Background(), read, notReady); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "catching up") {
		t.Errorf("read while catching up: %v, want Unavailable saying why", err)
	}
	if err := s.gate(context.Background(), "/gantry.v1.GantryService/SubmitJob", notReady); err != nil {
		t.Errorf("write while catching up: %v, want it let through", err)
	}

	// A client that saw index 5 is served; one that saw 7 waits for it.
	if err := s.gate(withMin("5"), read, ready); err != nil {
		t.Errorf("min index already applied: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.gate(withMin("7"), read, ready) }()
	select {
	case err := <-done:
		t.Fatalf("min index 7 answered at index 5: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	applyAt(t, f, 7)
	if err := <-done; err != nil {
		t.Errorf("min index 7 after applying 7: %v", err)
	}

	// A replica that does not get there refuses rather than go back in time.
	if err := s.gate(withMin("100"), read, ready); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "behind index 100") {
		t.Errorf("min index never reached: %v, want Unavailable naming the index", err)
	}
	if err := s.gate(withMin("x"), read, ready); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad min index: %v, want InvalidArgument", err)
	}
}
