package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantryci/gantry/coordinator"
)

// withInspect adds `inspect` to the coordinator command.
func withInspect(coordinatorCmd *cobra.Command, g *globals) *cobra.Command {
	coordinatorCmd.AddCommand(newInspectCmd(g))
	return coordinatorCmd
}

// newInspectCmd is `gantry coordinator inspect`: the replicated state of a
// stopped coordinator's data directory, to compare replicas.
func newInspectCmd(g *globals) *cobra.Command {
	dataDir := defaultDataDir("coordinator")
	cmd := &cobra.Command{
		Use:   "inspect [--data-dir DIR]",
		Short: "Print a stopped coordinator's last applied index and a digest of its replicated state",
		Long: `Read a stopped coordinator's data directory (nothing in it is changed):
restore its newest Raft snapshot, apply the log entries after it and print
the index of the last command applied and the SHA-256 of the state there.
Replicas that stopped at the same applied index must print the same digest:
after a rolling upgrade, stop the coordinators once nothing changes any more
and compare. The log's tail may hold entries that were never committed;
compare like with like, at equal indexes. A running coordinator's directory
is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := coordinator.Inspect(dataDir)
			if err != nil {
				return err
			}
			if g.output == "json" {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			w := os.Stdout
			fmt.Fprintf(w, "data dir       %s (raft store %s)\n", in.DataDir, in.Store)
			if in.SnapshotID != "" {
				fmt.Fprintf(w, "snapshot       %s (index %d, term %d)\n", in.SnapshotID, in.SnapshotIndex, in.SnapshotTerm)
			} else {
				fmt.Fprintln(w, "snapshot       none")
			}
			fmt.Fprintf(w, "log            %d..%d (last term %d), %d commands after the snapshot\n", in.FirstLogIndex, in.LastLogIndex, in.LastLogTerm, in.CommandsApplied)
			fmt.Fprintf(w, "applied index  %d\n", in.AppliedIndex)
			fmt.Fprintf(w, "state sha256   %s\n", in.StateSHA256)
			fmt.Fprintf(w, "jobs           %d\n", in.Jobs)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "the stopped coordinator's --data-dir (or its raft directory)")
	return cmd
}
