package fsm

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fill sets every field of m reachable within depth: scalars to values
// that are not zero, two elements per list, one entry per map (two in the
// map field named wide), and in each oneof the alternative choice picks.
func fill(m protoreflect.Message, depth, choice int, wide protoreflect.FullName) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() && o.Fields().Get(choice%o.Fields().Len()) != f {
			continue
		}
		switch {
		case f.IsMap():
			mp := m.Mutable(f).Map()
			n := 1
			if f.FullName() == wide {
				n = 2
			}
			for k := range n {
				mp.Set(protoreflect.ValueOfString(fmt.Sprintf("k%d", k)).MapKey(), scalar(f.MapValue(), k))
			}
		case f.IsList():
			l := m.Mutable(f).List()
			for k := range 2 {
				if f.Message() != nil {
					if depth == 0 {
						break
					}
					e := l.NewElement()
					fill(e.Message(), depth-1, choice+k, wide)
					l.Append(e)
				} else {
					l.Append(scalar(f, k))
				}
			}
		case f.Message() != nil:
			if depth > 0 {
				fill(m.Mutable(f).Message(), depth-1, choice, wide)
			}
		default:
			m.Set(f, scalar(f, 0))
		}
	}
}

func scalar(f protoreflect.FieldDescriptor, k int) protoreflect.Value {
	switch f.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", f.Name(), k))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(k + 1), 2})
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(k + 1))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(k + 7))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(k + 300))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(k + 7))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(k + 300))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(k) + 1.5)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(k) + 1.5)
	}
	panic(fmt.Sprintf("fill: field %s of kind %s", f.FullName(), f.Kind()))
}

// mapFields lists the map fields reachable from md.
func mapFields(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool, out *[]protoreflect.FullName) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		switch {
		case f.IsMap():
			*out = append(*out, f.FullName())
			if v := f.MapValue().Message(); v != nil {
				mapFields(v, seen, out)
			}
		case f.Message() != nil:
			mapFields(f.Message(), seen, out)
		}
	}
}

// An ended job is sealed as its deterministic encoding whichever encoder
// wrote it: jobs with every field set (each oneof alternative in turn)
// encode the same as proto's deterministic encoding, and a job with two
// entries in any one of its maps is seen and left to proto.
func TestEndedJobsEncodeDeterministically(t *testing.T) {
	det := proto.MarshalOptions{Deterministic: true}
	var maps []protoreflect.FullName
	mapFields((&gv1.Job{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{}, &maps)
	if len(maps) == 0 {
		t.Fatal("a job has no map fields")
	}
	tried := map[protoreflect.FullName]bool{}
	for choice := range 8 {
		j := &gv1.Job{}
		fill(j.ProtoReflect(), 8, choice, "")
		if !plainMaps(j) {
			t.Fatalf("choice %d: a job with one entry per map is not plain", choice)
		}
		got, err := encodeEnded(j)
		if err != nil {
			t.Fatal(err)
		}
		want, err := det.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("choice %d: the generated encoding (%d bytes) differs from the deterministic one (%d bytes)", choice, len(got), len(want))
		}
		for _, wide := range maps {
			w := &gv1.Job{}
			fill(w.ProtoReflect(), 8, choice, wide)
			if proto.Equal(w, j) {
				continue // not reached with this choice
			}
			tried[wide] = true
			if plainMaps(w) {
				t.Errorf("choice %d: two entries in %s are not seen", choice, wide)
			}
		}
	}
	for _, m := range maps {
		if !tried[m] {
			t.Errorf("no job tried two entries in %s", m)
		}
	}
}
