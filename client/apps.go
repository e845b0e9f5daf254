package client

import (
	"context"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// CreateApp registers a GitOps application: the manifests at spec.Path of
// spec.Repo, deployed to spec.Namespace of spec.Cluster.
func (c *Client) CreateApp(ctx context.Context, spec *gv1.AppSpec) (*gv1.App, error) {
	resp, err := c.api.CreateApp(ctx, &gv1.CreateAppRequest{Spec: spec})
	return resp.GetApp(), err
}

// Apps lists the applications with their sync and health status.
func (c *Client) Apps(ctx context.Context) ([]*gv1.AppSummary, error) {
	resp, err := c.api.ListApps(ctx, &gv1.ListAppsRequest{})
	return resp.GetApps(), err
}

// App returns an application with its deploy history, its status and the
// drift of its live objects.
func (c *Client) App(ctx context.Context, name string) (*gv1.GetAppResponse, error) {
	return c.api.GetApp(ctx, &gv1.GetAppRequest{Name: name})
}

// AppHistory returns an application's deploys, oldest first.
func (c *Client) AppHistory(ctx context.Context, name string) ([]*gv1.DeployRecord, error) {
	resp, err := c.App(ctx, name)
	return resp.GetApp().GetHistory(), err
}

// AppDrift returns how an application's live objects differ from what was
// deployed, as last reported by the agent watching them; nil when no agent
// has reported yet.
func (c *Client) AppDrift(ctx context.Context, name string) (*gv1.DriftReport, error) {
	resp, err := c.App(ctx, name)
	return resp.GetDrift(), err
}

// SyncApp deploys the newest commit of an application's branch, or the
// commit it is pinned to, now. The answer names the deploy job and the
// revision; follow the job with FollowJob.
func (c *Client) SyncApp(ctx context.Context, name string) (*gv1.SyncAppResponse, error) {
	return c.api.SyncApp(ctx, &gv1.SyncAppRequest{Name: name})
}

// RollbackApp deploys a revision the application ran before (a commit, a
// unique prefix of one, or a deploy id of its history) and pins it there
// until UnpinApp.
func (c *Client) RollbackApp(ctx context.Context, name, revision string) (*gv1.RollbackAppResponse, error) {
	return c.api.RollbackApp(ctx, &gv1.RollbackAppRequest{Name: name, Revision: revision})
}

// UnpinApp lets auto-sync follow the application's branch again.
func (c *Client) UnpinApp(ctx context.Context, name string) error {
	_, err := c.api.UnpinApp(ctx, &gv1.UnpinAppRequest{Name: name})
	return err
}

// DeleteApp forgets an application and its history; its live objects are
// left running.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	_, err := c.api.DeleteApp(ctx, &gv1.DeleteAppRequest{Name: name})
	return err
}
