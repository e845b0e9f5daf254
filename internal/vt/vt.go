// Package vt encodes messages with the methods protoc-gen-go-vtproto
// generates for Gantry's own (MarshalVT): about four times faster than
// proto.Marshal and with one allocation, where proto.Marshal walks each
// message by reflection (a 20-task job: 25 µs against 109 µs, 1 allocation
// against 161). Messages without those methods are encoded by
// proto.Marshal.
//
// Decoding stays with proto.Unmarshal wherever the bytes come from outside
// (a client, an agent): unlike UnmarshalVT it refuses strings that are not
// UTF-8. UnmarshalVT is for what Gantry encoded itself (the Raft log).
package vt

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

type marshaler interface {
	MarshalVT() ([]byte, error)
}

// Marshal encodes m.
func Marshal(m proto.Message) ([]byte, error) {
	if v, ok := m.(marshaler); ok {
		return v.MarshalVT()
	}
	return proto.Marshal(m)
}

// Codec is gRPC's "proto" codec with answers encoded by Marshal; what
// arrives is decoded by proto.Unmarshal.
type Codec struct{}

// Marshal encodes a message of a call.
func (Codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("vt: %T is not a protocol buffers message", v)
	}
	return Marshal(m)
}

// Unmarshal decodes a message of a call.
func (Codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("vt: %T is not a protocol buffers message", v)
	}
	return proto.Unmarshal(data, m)
}

// Name is the content subtype the codec serves: gRPC's default.
func (Codec) Name() string { return "proto" }
