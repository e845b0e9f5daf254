package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryci/gantry/internal/version"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// versionInfo is `gantry version -o json`.
type versionInfo struct {
	Version    string            `json:"version"`
	MaxCommand int32             `json:"max_command"`
	Nodes      map[string]string `json:"nodes,omitempty"`
	Cluster    string            `json:"cluster_error,omitempty"`
}

func newVersionCmd(g *globals) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print this build's version and, when the cluster at --addr answers, each coordinator's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := versionInfo{Version: version.String(), MaxCommand: version.MaxCommand()}
			if !local {
				c, err := g.dial()
				if err == nil {
					ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
					var st *gv1.ClusterStatusResponse
					st, err = c.Raw().ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
					cancel()
					c.Close()
					if err == nil {
						info.Nodes = map[string]string{}
						for _, n := range st.GetNodes() {
							info.Nodes[n.GetId()] = n.GetVersion()
						}
					}
				}
				if err != nil {
					info.Cluster = err.Error()
				}
			}
			if g.output == "json" {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			w := os.Stdout
			fmt.Fprintf(w, "gantry %s (Raft commands up to %d)\n", info.Version, info.MaxCommand)
			for _, id := range slices.Sorted(maps.Keys(info.Nodes)) {
				fmt.Fprintf(w, "coordinator %s: %s\n", id, dash(info.Nodes[id]))
			}
			if info.Cluster != "" && !local {
				fmt.Fprintf(os.Stderr, "cluster at %s: %s\n", g.addr, info.Cluster)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&local, "client", false, "only this binary's version; do not ask the cluster")
	return cmd
}
