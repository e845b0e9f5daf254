package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/spec"
	"github.com/gantryci/gantry/internal/forge"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// validateApp checks an application spec and names the offending field.
func validateApp(a *gv1.AppSpec) error {
	switch {
	case a == nil:
		return status.Error(codes.InvalidArgument, "spec: required")
	case !spec.ValidName(a.GetName()):
		return status.Errorf(codes.InvalidArgument, "spec.name: %q is not a valid name; use letters, digits, '-', '_' and '.', at most 63 characters", a.GetName())
	case strings.TrimSpace(a.GetRepo()) == "":
		return status.Error(codes.InvalidArgument, "spec.repo: required (a Git URL)")
	case !spec.ValidName(a.GetCluster()):
		return status.Errorf(codes.InvalidArgument, "spec.cluster: %q is not a valid cluster name (agents advertise theirs, e.g. local)", a.GetCluster())
	case !spec.ValidNamespace(a.GetNamespace()):
		return status.Errorf(codes.InvalidArgument, "spec.namespace: %q is not a valid namespace; use lower-case letters, digits and '-'", a.GetNamespace())
	case strings.HasPrefix(a.GetPath(), "/") || a.GetPath() == ".." || strings.HasPrefix(a.GetPath(), "../"):
		return status.Errorf(codes.InvalidArgument, "spec.path: %q must be a relative path inside the repository", a.GetPath())
	case a.GetPollInterval() != nil && a.GetPollInterval().AsDuration() < 100*time.Millisecond:
		return status.Error(codes.InvalidArgument, "spec.poll_interval: at least 100ms")
	case a.GetHealthTimeout() != nil && a.GetHealthTimeout().AsDuration() <= 0:
		return status.Error(codes.InvalidArgument, "spec.health_timeout: must be positive")
	}
	kind, err := forge.ParseKind(a.GetForge())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "spec.forge: %v", err)
	}
	a.Forge = string(kind)
	if a.GetForgeUrl() != "" {
		if err := checkRepoURL("spec.forge_url", a.GetForgeUrl(), false); err != nil {
			return err
		}
	}
	if kind != forge.None {
		if _, err := forge.RepoFromURL(a.GetRepo()); err != nil {
			return status.Errorf(codes.InvalidArgument, "spec.repo: %v (a forge needs owner/name in the URL)", err)
		}
	}
	if c := a.GetCredential(); c != "" {
		if err := name.Token(c); err != nil {
			return status.Errorf(codes.InvalidArgument, "spec.credential: %v", err)
		}
	}
	return nil
}

// publicApp is an application as the API shows it: without its sealed
// webhook secret. a is the FSM's copy.
func publicApp(a *gv1.App) *gv1.App {
	if a != nil {
		a.WebhookSecret, a.WebhookKeyId = nil, ""
	}
	return a
}

// AppWebhookSecretName is the name an application's webhook secret is
// sealed under (the keyring binds a value to its name).
func AppWebhookSecretName(app string) string { return "app/" + app + "/webhook" }

// CreateApp registers a GitOps application. With a forge and a
// credential it first registers the repository's push webhook on the
// forge, so that commits are seen at once rather than at the next poll.
func (s *Server) CreateApp(ctx context.Context, req *gv1.CreateAppRequest) (*gv1.CreateAppResponse, error) {
	as := proto.Clone(req.GetSpec()).(*gv1.AppSpec)
	if err := validateApp(as); err != nil {
		return nil, err
	}
	if c := as.GetCredential(); c != "" {
		if _, ok := s.d.FSM.Secret(c); !ok {
			return nil, status.Errorf(codes.InvalidArgument, "spec.credential: secret %q does not exist (create it with `gantry secret set %s`)", c, c)
		}
	}
	if a, ok := s.d.FSM.App(as.GetName()); ok && a.GetSpec().GetRepo() != "" {
		return nil, status.Errorf(codes.AlreadyExists, "spec.name: application %q already exists", as.GetName())
	}
	resp := &gv1.CreateAppResponse{WebhookUrl: s.d.Projects.HookURL()}
	create := &gv1.CreateAppCommand{Spec: as}
	// The application's own webhook secret, when there is a keyring to
	// seal it with; else pushes are checked against --webhook-secret.
	hookSecret := s.d.AppHookSecret
	if k := s.keyring.Load(); k != nil {
		var raw [24]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, status.Errorf(codes.Internal, "webhook secret: %v", err)
		}
		hookSecret = hex.EncodeToString(raw[:])
		keyID, sealed, err := k.Seal(AppWebhookSecretName(as.GetName()), []byte(hookSecret))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "seal webhook secret: %v", err)
		}
		create.WebhookSecret, create.WebhookKeyId = sealed, keyID
		resp.WebhookSecret = hookSecret
	}
	cl, repo, err := s.d.Projects.ForgeClient(as.GetForge(), as.GetForgeUrl(), as.GetRepo(), as.GetCredential())
	switch {
	case err != nil:
		resp.HookError = err.Error()
	case cl != nil:
		create.HookId, err = cl.CreateHook(ctx, repo, forge.Hook{URL: resp.WebhookUrl, Secret: hookSecret, Events: []forge.EventKind{forge.Push}})
		if err != nil {
			resp.HookError = fmt.Sprintf("register webhook on %s: %v", as.GetForge(), err)
		}
	}
	hookID := create.HookId
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_CreateApp{CreateApp: create}})); err != nil {
		if hookID != "" {
			if derr := cl.DeleteHook(context.WithoutCancel(ctx), repo, hookID); derr != nil {
				s.log.Warn("remove the webhook of an application not created", zap.String("app", as.GetName()), zap.String("hook", hookID), zap.Error(derr))
			}
		}
		return nil, toStatus(err)
	}
	resp.HookRegistered = hookID != ""
	a, _ := s.d.FSM.App(as.GetName())
	resp.App = publicApp(a)
	return resp, nil
}

// ListApps lists applications with their status.
func (s *Server) ListApps(ctx context.Context, req *gv1.ListAppsRequest) (*gv1.ListAppsResponse, error) {
	resp := &gv1.ListAppsResponse{}
	for _, a := range s.d.FSM.AppViews() {
		resp.Apps = append(resp.Apps, s.d.GitOps.Summary(a))
	}
	return resp, nil
}

// GetApp returns an application, its history and its drift.
func (s *Server) GetApp(ctx context.Context, req *gv1.GetAppRequest) (*gv1.GetAppResponse, error) {
	a, ok := s.d.FSM.App(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "name: no application %q", req.GetName())
	}
	return &gv1.GetAppResponse{App: publicApp(a), Summary: s.d.GitOps.Summary(fsm.ViewOf(a)), Drift: s.d.GitOps.Drift(req.GetName())}, nil
}

// SyncApp deploys an application's target now: its pin, or the newest
// commit of its branch (asked of the remote now, not at the last poll).
func (s *Server) SyncApp(ctx context.Context, req *gv1.SyncAppRequest) (*gv1.SyncAppResponse, error) {
	a, err := s.app(req.GetName())
	if err != nil {
		return nil, err
	}
	rev := a.GetPinnedRevision()
	if rev == "" {
		if rev, err = s.d.GitOps.Resolve(ctx, a); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "resolve %s of %s: %v", orHEAD(a.GetSpec().GetRevision()), a.GetSpec().GetRepo(), err)
		}
		if rev != a.GetLatestRevision() {
			if _, err := s.d.Proposer.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_ObserveRevision{
				ObserveRevision: &gv1.ObserveRevisionCommand{Name: req.GetName(), Revision: rev},
			}}); err != nil {
				return nil, toStatus(err)
			}
		}
	}
	id, err := s.deployNow(ctx, a, rev, "sync")
	if err != nil {
		return nil, err
	}
	return &gv1.SyncAppResponse{JobId: id, Revision: rev}, nil
}

// RollbackApp pins an application to a revision it ran before and deploys it.
func (s *Server) RollbackApp(ctx context.Context, req *gv1.RollbackAppRequest) (*gv1.RollbackAppResponse, error) {
	a, err := s.app(req.GetName())
	if err != nil {
		return nil, err
	}
	rev, err := findRevision(a, req.GetRevision())
	if err != nil {
		return nil, err
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_PinApp{
		PinApp: &gv1.PinAppCommand{Name: req.GetName(), Revision: rev},
	}})); err != nil {
		return nil, toStatus(err)
	}
	a.PinnedRevision = rev
	id, err := s.deployNow(ctx, a, rev, "rollback")
	if err != nil {
		return nil, err
	}
	return &gv1.RollbackAppResponse{JobId: id, Revision: rev}, nil
}

// findRevision finds a recorded revision by deploy id or commit prefix.
func findRevision(a *gv1.App, want string) (string, error) {
	want = strings.TrimSpace(want)
	if want == "" {
		return "", status.Error(codes.InvalidArgument, "revision: required (a commit deployed before, or a deploy id from the history)")
	}
	if id, err := strconv.ParseUint(want, 10, 64); err == nil && len(want) < 7 {
		for _, r := range a.GetHistory() {
			if r.GetId() == id {
				if r.GetRevision() == "" {
					return "", status.Errorf(codes.FailedPrecondition, "revision: deploy %d has no Git revision", id)
				}
				return r.GetRevision(), nil
			}
		}
		return "", status.Errorf(codes.NotFound, "revision: no deploy %d in the history of %s", id, a.GetSpec().GetName())
	}
	found := map[string]bool{}
	for _, r := range a.GetHistory() {
		if r.GetRevision() != "" && strings.HasPrefix(r.GetRevision(), want) {
			found[r.GetRevision()] = true
		}
	}
	switch len(found) {
	case 0:
		return "", status.Errorf(codes.NotFound, "revision: %q was never deployed to %s (see gantry app history)", want, a.GetSpec().GetName())
	case 1:
		for r := range found {
			return r, nil
		}
	}
	return "", status.Errorf(codes.InvalidArgument, "revision: %q matches %d deployed commits; give more of it", want, len(found))
}

// deployNow deploys rev, superseding a deploy of another revision.
func (s *Server) deployNow(ctx context.Context, a *gv1.App, rev, trigger string) (string, error) {
	id, err := s.d.GitOps.Deploy(ctx, fsm.ViewOf(a), rev, trigger)
	if err != nil {
		return "", toStatus(err)
	}
	return id, nil
}

// UnpinApp lets an application follow its branch again.
func (s *Server) UnpinApp(ctx context.Context, req *gv1.UnpinAppRequest) (*gv1.UnpinAppResponse, error) {
	if _, err := s.app(req.GetName()); err != nil {
		return nil, err
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_PinApp{PinApp: &gv1.PinAppCommand{Name: req.GetName()}}})); err != nil {
		return nil, toStatus(err)
	}
	return &gv1.UnpinAppResponse{}, nil
}

// DeleteApp forgets an application; its live objects are left alone.
func (s *Server) DeleteApp(ctx context.Context, req *gv1.DeleteAppRequest) (*gv1.DeleteAppResponse, error) {
	a, _ := s.d.FSM.App(req.GetName())
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_DeleteApp{DeleteApp: &gv1.DeleteAppCommand{Name: req.GetName()}}})); err != nil {
		return nil, toStatus(err)
	}
	resp := &gv1.DeleteAppResponse{}
	if id := a.GetHookId(); id != "" {
		as := a.GetSpec()
		cl, repo, err := s.d.Projects.ForgeClient(as.GetForge(), as.GetForgeUrl(), as.GetRepo(), as.GetCredential())
		if err == nil && cl != nil {
			err = cl.DeleteHook(ctx, repo, id)
		}
		if err != nil {
			resp.HookError = fmt.Sprintf("remove webhook %s from %s: %v", id, as.GetForge(), err)
		}
	}
	return resp, nil
}

func (s *Server) app(name string) (*gv1.App, error) {
	a, ok := s.d.FSM.App(name)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "name: no application %q", name)
	}
	if a.GetSpec().GetRepo() == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "name: %q is deployed by pipelines, not followed in Git (create it with gantry app create to manage it here)", name)
	}
	return a, nil
}

func orHEAD(rev string) string {
	if rev == "" {
		return "HEAD"
	}
	return rev
}
