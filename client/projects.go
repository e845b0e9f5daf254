package client

import (
	"context"
	"math"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// CreateProject registers a project: the pipeline file at spec.Pipeline of
// spec.Repo, built on every change. The answer holds the webhook URL and
// secret, shown only this once; with a forge and a credential the webhook
// is registered on the forge (HookRegistered), else it is configured by
// hand. HookError tells why registering did not work; the project exists
// anyway.
func (c *Client) CreateProject(ctx context.Context, spec *gv1.ProjectSpec) (*gv1.CreateProjectResponse, error) {
	return c.api.CreateProject(ctx, &gv1.CreateProjectRequest{Spec: spec})
}

// Projects lists the projects, each with its newest build.
func (c *Client) Projects(ctx context.Context) ([]*gv1.ProjectSummary, error) {
	resp, err := c.api.ListProjects(ctx, &gv1.ListProjectsRequest{})
	return resp.GetProjects(), err
}

// Project returns a project with up to limit of its newest builds, newest
// first; zero means 50.
func (c *Client) Project(ctx context.Context, name string, limit int) (*gv1.ProjectSummary, error) {
	resp, err := c.api.GetProject(ctx, &gv1.GetProjectRequest{Name: name, Limit: int32(min(max(limit, 0), math.MaxInt32))})
	return resp.GetProject(), err
}

// DeleteProject forgets a project and its builds, and removes its webhook
// from the forge. HookError tells why removing the webhook did not work;
// the project is deleted anyway. Jobs its builds started are left alone.
func (c *Client) DeleteProject(ctx context.Context, name string) (*gv1.DeleteProjectResponse, error) {
	return c.api.DeleteProject(ctx, &gv1.DeleteProjectRequest{Name: name})
}

// RunProject builds ref (a branch, a tag or a commit; empty means the
// default branch) of a project now, as a new build. Follow its job with
// FollowJob.
func (c *Client) RunProject(ctx context.Context, name, ref string) (*gv1.BuildSummary, error) {
	resp, err := c.api.RunProject(ctx, &gv1.RunProjectRequest{Name: name, Ref: ref})
	return resp.GetBuild(), err
}

// ApproveBuild lets a build held for approval (an untrusted change) run,
// or with reject ends it without running.
func (c *Client) ApproveBuild(ctx context.Context, project string, number uint64, reject bool) (*gv1.BuildSummary, error) {
	resp, err := c.api.ApproveBuild(ctx, &gv1.ApproveBuildRequest{Project: project, Number: number, Reject: reject})
	return resp.GetBuild(), err
}
