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
	var max int32
	fields := (&gv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("cmd").Fields()
	for i := range fields.Len() {
		if n := int32(fields.Get(i).Number()); n > max {
			max = n
		}
	}
	return max
}
