// Package buildkey names the BuildKit cache a build warms: builds of the same
// repository (or agent directory) and Dockerfile share most of their cache.
// Agents announce the keys of their recent builds; the scheduler prefers an
// agent that already holds the key of a build it places.
package buildkey

import (
	"path"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// For returns the cache key of a build, or "" when it has no context.
func For(b *gv1.BuildSpec) string {
	df := b.GetDockerfile()
	if df == "" {
		df = "Dockerfile"
	}
	df = path.Clean(df)
	switch c := b.GetContext(); {
	case c.GetGit().GetUrl() != "":
		return "git:" + c.GetGit().GetUrl() + "#" + df
	case c.GetDir() != "":
		return "dir:" + path.Clean(c.GetDir()) + "#" + df
	}
	return ""
}
