// Package version says which build of Gantry this is and which Raft
// command types it knows, for `gantry version`, the nodes' statuses and
// rolling upgrades.
package version

import (
	"runtime/debug"
	"sync"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Version is set at link time (-ldflags "-X
// github.com/gantryci/gantry/internal/version.Version=v1.2.3"); empty
// means the VCS revision Go recorded in the binary, else "dev".
var Version string

var (
	once     sync.Once
	resolved string
)

// String is this build's version.
func String() string {
	once.Do(func() {
		resolved = Version
		if resolved != "" {
			return
		}
		resolved = "dev"
		info, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			resolved = "dev-" + rev + dirty
		}
	})
	return resolved
}

// MaxCommand is the highest field number of Command's command oneof this
// build knows: a node that reports a lower one cannot apply the command
// types above it.
func MaxCommand() int32 {
	maxOnce.Do(func() {
		fields := cmdOneof.Fields()
		for i := range fields.Len() {
			maxCommand = max(maxCommand, int32(fields.Get(i).Number()))
		}
	})
	return maxCommand
}

var (
	cmdOneof   = (&gv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("cmd")
	maxOnce    sync.Once
	maxCommand int32
)

// CommandType is the field number of c's command in Command's oneof; 0
// for none.
func CommandType(c *gv1.Command) int32 {
	if fd := c.ProtoReflect().WhichOneof(cmdOneof); fd != nil {
		return int32(fd.Number())
	}
	return 0
}
