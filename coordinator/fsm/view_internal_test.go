package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// scramble changes every value set in m, in nested messages, lists and
// maps too, in place.
func scramble(m protoreflect.Message) {
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case f.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				v.Map().Set(k, scalar(f.MapValue(), 40))
				return true
			})
		case f.IsList():
			for i := 0; i < v.List().Len(); i++ {
				if f.Message() != nil {
					scramble(v.List().Get(i).Message())
				} else {
					v.List().Set(i, scalar(f, 40))
				}
			}
		case f.Message() != nil:
			scramble(v.Message())
		default:
			m.Set(f, scalar(f, 40))
		}
		return true
	})
}

// The basic view is the whole job less the specs of its tasks: every other
// field, present or added later, is copied, and the copy shares nothing
// the state could change under a reader.
func TestBasicJobCopiesEveryOtherField(t *testing.T) {
	j := &gv1.Job{}
	fill(j.ProtoReflect(), 4, 0, "")
	if len(j.Spec.GetTasks()) == 0 || len(j.Tasks) == 0 || j.Tasks[0].GetSpec() == nil {
		t.Fatal("the fixture has no specs to leave out")
	}
	want := dropSpecs(j.CloneVT())
	before := j.CloneVT()

	got := basicJob(j)
	if !proto.Equal(got, want) {
		t.Fatalf("basicJob:\n got %v\nwant %v", got, want)
	}
	if !proto.Equal(j, before) {
		t.Fatal("basicJob changed the job it copied")
	}
	scramble(got.ProtoReflect())
	if proto.Equal(got, want) {
		t.Fatal("scramble changed nothing")
	}
	if !proto.Equal(j, before) {
		t.Fatal("the basic copy shares a message, list or map with the job")
	}
	if size, full := proto.Size(want), proto.Size(j); size >= full {
		t.Fatalf("basic view %d bytes, whole job %d", size, full)
	}
}
