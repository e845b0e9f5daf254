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

// Metadata keys that let a client send writes straight to the leader. Every
// answer names the coordinator that served it (NodeHeader, its node ID);
// answers of the calls only the leader serves (followers forward them)
// name the leader as the serving node knows it: LeaderHeader its node ID,
// LeaderAddrHeader the API address it announced, when known. A client that
// dials that address (or a coordinator it heard answer with that ID) may
// send such calls there and save the forwarding hop; any coordinator still
// serves every call.
const (
	NodeHeader       = "gantry-node"
	LeaderHeader     = "gantry-leader"
	LeaderAddrHeader = "gantry-leader-addr"
)

// Authorization carries the caller's credentials as "Bearer TOKEN".
const Authorization = "authorization"
