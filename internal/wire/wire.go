// Package wire names what travels with API calls besides the messages: the
// gRPC metadata keys that clients and coordinators agree on. It is shared by
// the server (coordinator/api) and the public client, which must not import
// the server.
package wire

// Metadata keys of honest reads. Every answer carries the index of the state
// it was served from (IndexHeader); a client that sends the highest index it
// has seen (MinIndexHeader) is never answered from an older state, whichever
// coordinator it reaches.
const (
	IndexHeader    = "gantry-index"
	MinIndexHeader = "gantry-min-index"
)

// Authorization carries the caller's credentials as "Bearer TOKEN".
const Authorization = "authorization"
