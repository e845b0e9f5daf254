package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/project"
	"github.com/gantryci/gantry/coordinator/spec"
	"github.com/gantryci/gantry/internal/forge"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Bounds of a project spec.
const (
	maxProjectGlobs = 64
	minPollEvery    = time.Second
)

// validateProject checks a project spec and fills its defaults.
func validateProject(s *gv1.ProjectSpec) error {
	if s == nil {
		return status.Error(codes.InvalidArgument, "spec: required")
	}
	if err := name.Token(s.GetName()); err != nil {
		return status.Errorf(codes.InvalidArgument, "spec.name: %v", err)
	}
	if err := checkRepoURL("spec.repo", s.GetRepo(), true); err != nil {
		return err
	}
	kind, err := forge.ParseKind(s.GetForge())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "spec.forge: %v", err)
	}
	s.Forge = string(kind)
	if s.GetForgeUrl() != "" {
		if err := checkRepoURL("spec.forge_url", s.GetForgeUrl(), false); err != nil {
			return err
		}
	}
	if kind != forge.None {
		if _, err := forge.RepoFromURL(s.GetRepo()); err != nil {
			return status.Errorf(codes.InvalidArgument, "spec.repo: %v (a forge needs owner/name in the URL)", err)
		}
	}
	if c := s.GetCredential(); c != "" {
		if err := name.Token(c); err != nil {
			return status.Errorf(codes.InvalidArgument, "spec.credential: %v", err)
		}
	}
	if s.GetPipeline() == "" {
		s.Pipeline = project.DefaultPipeline
	}
	if p := s.GetPipeline(); len(p) > 1024 || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." {
		return status.Errorf(codes.InvalidArgument, "spec.pipeline %q: a clean path relative to the repository root", limitStr(p))
	}
	globs := func(field string, list []string) error {
		if len(list) > maxProjectGlobs {
			return status.Errorf(codes.InvalidArgument, "%s: at most %d patterns, got %d", field, maxProjectGlobs, len(list))
		}
		for i, g := range list {
			if err := spec.BranchGlob(g); err != nil {
				return status.Errorf(codes.InvalidArgument, "%s[%d]: %v", field, i, err)
			}
		}
		return nil
	}
	for field, list := range map[string][]string{"spec.branches": s.GetBranches(), "spec.paths": s.GetPaths(), "spec.paths_ignore": s.GetPathsIgnore()} {
		if err := globs(field, list); err != nil {
			return err
		}
	}
	for i, e := range s.GetEvents() {
		if !slices.Contains([]string{"push", "tag", "pull_request"}, e) {
			return status.Errorf(codes.InvalidArgument, "spec.events[%d]: unknown event %q; events are push, tag, pull_request", i, limitStr(e))
		}
	}
	if c := s.GetCron(); c != "" {
		if _, err := project.ParseCron(c); err != nil {
			return status.Errorf(codes.InvalidArgument, "spec.cron %q: %v (five fields: minute hour day-of-month month day-of-week, UTC)", limitStr(c), err)
		}
	}
	if d := s.GetPollEvery(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < minPollEvery {
			return status.Errorf(codes.InvalidArgument, "spec.poll_every: at least %s", minPollEvery)
		}
	}
	if u := s.GetExternalUrl(); u != "" {
		if err := checkRepoURL("spec.external_url", u, false); err != nil {
			return err
		}
	}
	return nil
}

func limitStr(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// checkRepoURL checks a URL field: http(s), or for a repository also ssh
// and scp-like (git@host:path) and file.
func checkRepoURL(field, raw string, repo bool) error {
	if raw == "" {
		return status.Errorf(codes.InvalidArgument, "%s: required", field)
	}
	if len(raw) > 2048 || strings.ContainsAny(raw, " \t\r\n\x00") {
		return status.Errorf(codes.InvalidArgument, "%s: not a URL", field)
	}
	if repo && !strings.Contains(raw, "://") && strings.Contains(raw, "@") && strings.Contains(raw, ":") {
		return nil // scp-like SSH
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" && u.Scheme != "file" {
		return status.Errorf(codes.InvalidArgument, "%s %q: not a URL with a host", field, limitStr(raw))
	}
	ok := u.Scheme == "http" || u.Scheme == "https" || repo && (u.Scheme == "ssh" || u.Scheme == "file" || u.Scheme == "git")
	if !ok {
		return status.Errorf(codes.InvalidArgument, "%s %q: scheme %s is not supported", field, limitStr(raw), u.Scheme)
	}
	return nil
}

// CreateProject creates a project: a webhook secret is made and sealed, and
// with a forge credential the webhook is registered on the forge.
func (s *Server) CreateProject(ctx context.Context, req *gv1.CreateProjectRequest) (*gv1.CreateProjectResponse, error) {
	ps := proto.Clone(req.GetSpec()).(*gv1.ProjectSpec)
	if err := validateProject(ps); err != nil {
		return nil, err
	}
	if c := ps.GetCredential(); c != "" {
		if _, ok := s.d.FSM.Secret(c); !ok {
			return nil, status.Errorf(codes.InvalidArgument, "spec.credential: secret %q does not exist (create it with `gantry secret set %s`)", c, c)
		}
	}
	if _, ok := s.d.FSM.Project(ps.GetName()); ok {
		return nil, status.Errorf(codes.AlreadyExists, "spec.name: project %q already exists", ps.GetName())
	}
	k := s.keyring.Load()
	if k == nil {
		return nil, status.Error(codes.FailedPrecondition, "this coordinator has no secret keyring (--secret-keys) to seal the project's webhook secret with")
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, status.Errorf(codes.Internal, "webhook secret: %v", err)
	}
	hookSecret := hex.EncodeToString(raw[:])
	keyID, sealed, err := k.Seal(project.WebhookSecretName(ps.GetName()), []byte(hookSecret))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "seal webhook secret: %v", err)
	}
	p := &gv1.Project{Spec: ps, WebhookSecret: sealed, WebhookKeyId: keyID}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_CreateProject{CreateProject: &gv1.CreateProjectCommand{Project: p}}})); err != nil {
		return nil, toStatus(err)
	}
	resp := &gv1.CreateProjectResponse{WebhookUrl: s.d.Projects.WebhookURL(p), WebhookSecret: hookSecret}
	id, err := s.d.Projects.RegisterHook(ctx, p, hookSecret)
	switch {
	case err != nil:
		resp.HookError = err.Error()
	case id != "":
		if _, err := s.d.Proposer.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_SetProjectHook{SetProjectHook: &gv1.SetProjectHookCommand{Project: ps.GetName(), HookId: id}}}); err != nil {
			resp.HookError = "webhook " + id + " registered but not recorded: " + err.Error()
		}
		resp.HookRegistered = true
	}
	got, _ := s.d.FSM.Project(ps.GetName())
	resp.Project = s.projectSummary(got, 1)
	return resp, nil
}

// projectSummary is a project as the API shows it: without its webhook
// secret, with its newest builds (limit) and their jobs' states.
func (s *Server) projectSummary(p *gv1.Project, limit int) *gv1.ProjectSummary {
	if p == nil {
		return nil
	}
	out := &gv1.ProjectSummary{Spec: p.GetSpec(), CreatedAt: p.GetCreatedAt(), HookRegistered: p.GetHookId() != "", BuildsTotal: p.GetNextBuild() - 1}
	for i := len(p.GetBuilds()) - 1; i >= 0 && len(out.Builds) < limit; i-- {
		out.Builds = append(out.Builds, s.buildSummary(p.Builds[i]))
	}
	return out
}

func (s *Server) buildSummary(b *gv1.Build) *gv1.BuildSummary {
	bs := &gv1.BuildSummary{Build: b}
	if b.GetJobId() != "" {
		if st, ok := s.d.FSM.JobState(b.GetJobId()); ok {
			bs.State = st
		}
	}
	return bs
}

// ListProjects lists projects with their newest build.
func (s *Server) ListProjects(ctx context.Context, req *gv1.ListProjectsRequest) (*gv1.ListProjectsResponse, error) {
	resp := &gv1.ListProjectsResponse{}
	for _, p := range s.d.FSM.Projects() {
		resp.Projects = append(resp.Projects, s.projectSummary(p, 1))
	}
	return resp, nil
}

// GetProject returns a project with its newest builds.
func (s *Server) GetProject(ctx context.Context, req *gv1.GetProjectRequest) (*gv1.GetProjectResponse, error) {
	p, ok := s.d.FSM.Project(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "name: no project %q", req.GetName())
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = 50
	}
	return &gv1.GetProjectResponse{Project: s.projectSummary(p, limit)}, nil
}

// DeleteProject deletes a project and the webhook registered for it.
func (s *Server) DeleteProject(ctx context.Context, req *gv1.DeleteProjectRequest) (*gv1.DeleteProjectResponse, error) {
	p, ok := s.d.FSM.Project(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "name: no project %q", req.GetName())
	}
	resp := &gv1.DeleteProjectResponse{}
	if err := s.d.Projects.RemoveHook(ctx, p); err != nil {
		resp.HookError = err.Error()
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_DeleteProject{DeleteProject: &gv1.DeleteProjectCommand{Name: req.GetName()}}})); err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// RunProject builds a ref of a project now.
func (s *Server) RunProject(ctx context.Context, req *gv1.RunProjectRequest) (*gv1.RunProjectResponse, error) {
	if _, ok := s.d.FSM.Project(req.GetName()); !ok {
		return nil, status.Errorf(codes.NotFound, "name: no project %q", req.GetName())
	}
	if len(req.GetRef()) > 1024 || strings.ContainsAny(req.GetRef(), " \t\r\n\x00") {
		return nil, status.Error(codes.InvalidArgument, "ref: not a branch, tag or commit")
	}
	res, err := s.d.Projects.Run(ctx, req.GetName(), req.GetRef(), func(c *gv1.Command) *gv1.Command { return s.command(ctx, c) })
	if err != nil {
		if errors.Is(err, project.ErrSecret) {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		if st := toStatus(err); status.Code(st) != codes.Internal {
			return nil, st
		}
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	return &gv1.RunProjectResponse{Build: s.build(req.GetName(), res.Build)}, nil
}

// build returns the summary of one build.
func (s *Server) build(projectName string, n uint64) *gv1.BuildSummary {
	p, _ := s.d.FSM.Project(projectName)
	for _, b := range p.GetBuilds() {
		if b.GetNumber() == n {
			return s.buildSummary(b)
		}
	}
	return &gv1.BuildSummary{Build: &gv1.Build{Number: n}}
}

// ApproveBuild lets a held build run, or rejects it.
func (s *Server) ApproveBuild(ctx context.Context, req *gv1.ApproveBuildRequest) (*gv1.ApproveBuildResponse, error) {
	if req.GetProject() == "" || req.GetNumber() == 0 {
		return nil, status.Error(codes.InvalidArgument, "project and number: required")
	}
	_, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_ApproveBuild{ApproveBuild: &gv1.ApproveBuildCommand{
		Project: req.GetProject(), Number: req.GetNumber(), Reject: req.GetReject(),
	}}}))
	if err != nil {
		return nil, toStatus(err)
	}
	return &gv1.ApproveBuildResponse{Build: s.build(req.GetProject(), req.GetNumber())}, nil
}

// DeliverWebhook takes a forge's webhook delivery (see project.Deliver):
// it answers once the triggers are committed.
func (s *Server) DeliverWebhook(ctx context.Context, req *gv1.DeliverWebhookRequest) (*gv1.DeliverWebhookResponse, error) {
	if len(req.GetHeaders()) > 200 {
		return nil, status.Error(codes.InvalidArgument, "headers: more than 200")
	}
	h := http.Header{}
	for k, v := range req.GetHeaders() {
		h.Set(k, v)
	}
	d, err := s.d.Projects.Deliver(ctx, h, req.GetBody())
	switch {
	case errors.Is(err, project.ErrUnverified):
		return nil, status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, project.ErrNoProject):
		return nil, status.Error(codes.NotFound, err.Error())
	case errors.Is(err, forge.ErrPayload), errors.Is(err, forge.ErrSignature):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, toStatus(err)
	}
	resp := &gv1.DeliverWebhookResponse{Ignored: d.Ignored}
	for i, r := range d.Builds {
		resp.Builds = append(resp.Builds, s.build(d.Project[i], r.Build))
	}
	return resp, nil
}

// DecideTask approves or rejects a waiting approval task. The caller needs
// one of the roles the task names (or a higher one); operator when it
// names none.
func (s *Server) DecideTask(ctx context.Context, req *gv1.DecideTaskRequest) (*gv1.DecideTaskResponse, error) {
	if req.GetJobId() == "" || req.GetTask() == "" {
		return nil, status.Error(codes.InvalidArgument, "job_id and task: required")
	}
	if len(req.GetComment()) > 1024 {
		return nil, status.Error(codes.InvalidArgument, "comment: longer than 1024 bytes")
	}
	j, ok := s.d.FSM.Job(req.GetJobId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "job_id: no job %q", req.GetJobId())
	}
	var gate *gv1.ApprovalSpec
	for _, t := range j.GetTasks() {
		if t.GetName() == req.GetTask() {
			gate = t.GetSpec().GetApproval()
			if gate == nil {
				return nil, status.Errorf(codes.InvalidArgument, "task: %s of job %s is not an approval", req.GetTask(), req.GetJobId())
			}
		}
	}
	if gate == nil {
		return nil, status.Errorf(codes.NotFound, "task: job %s has no task %q", req.GetJobId(), req.GetTask())
	}
	need := operator
	for i, r := range gate.GetRoles() {
		role, err := ParseRole(r)
		if err != nil {
			continue
		}
		if i == 0 || role < need {
			need = role
		}
	}
	if c := CallerFrom(ctx); !s.d.Insecure && (c == nil || c.Token == nil || c.Token.GetRole() < need) {
		return nil, status.Errorf(codes.PermissionDenied, "DecideTask: %s of job %s is decided by role %s or above", req.GetTask(), req.GetJobId(), RoleName(need))
	}
	_, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_DecideTask{DecideTask: &gv1.DecideTaskCommand{
		JobId: req.GetJobId(), Task: req.GetTask(), Reject: req.GetReject(), Comment: req.GetComment(),
	}}}))
	if err != nil {
		return nil, toStatus(err)
	}
	j, _ = s.d.FSM.Job(req.GetJobId())
	return &gv1.DecideTaskResponse{Job: j}, nil
}
