// Package api serves the public gRPC API of a coordinator. Reads are served
// from the local replica (they may lag the leader by a few milliseconds);
// writes run on the leader, and a follower forwards them over NATS.
package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/dispatch"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/gitops"
	"github.com/gantryci/gantry/coordinator/project"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/coordinator/spec"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Cluster describes the coordinators for ClusterStatus.
type Cluster interface {
	Status(ctx context.Context) (*gv1.ClusterStatusResponse, error)
	// Self is this node's ID; Leader the leader's ID and announced API
	// address as this node knows them (empty while unknown).
	Self() string
	Leader() (id, grpcAddr string)
}

// Deps are what the API serves from.
type Deps struct {
	Log        *zap.Logger
	NATS       *nats.Conn
	Namespace  subject.Namespace
	FSM        *fsm.FSM
	Raft       *consensus.Node
	Proposer   *consensus.Proposer
	Dispatcher *dispatch.Dispatcher
	Cluster    Cluster
	GitOps     *gitops.Controller
	Projects   *project.Controller
	// AgentCA signs the certificates of agents that enroll with a join
	// token (--tls-ca-key); nil: this coordinator cannot enroll agents.
	AgentCA *pki.CA
	// AppHookSecret is what forges sign pushes of applications'
	// repositories with (--webhook-secret), given to the webhooks
	// CreateApp registers; empty registers them unsigned (gantry dev).
	AppHookSecret string
	// Insecure: calls without a token are answered and roles are not
	// checked (coordinator.Config.Insecure).
	Insecure bool
}

// Server implements gv1.GantryServiceServer.
type Server struct {
	gv1.UnimplementedGantryServiceServer
	d       Deps
	log     *zap.Logger
	keyring atomic.Pointer[secret.Keyring]
	// restoring allows one snapshot upload at a time (each may spool
	// limit.Snapshot bytes to disk).
	restoring sync.Mutex
	// chain is the unary interceptor chain the gRPC server runs, kept so
	// forwarded calls run through it too.
	chain atomic.Pointer[grpc.UnaryServerInterceptor]
	// ready is the node's readiness the interceptors were built with.
	ready atomic.Pointer[Readiness]
	// refusals bounds the refused calls recorded in the audit log.
	refusals *rate.Limiter
	// leader wakes forwarded calls when the leader changes (forward.go).
	leader leaderWatch
}

// New returns the API server.
func New(d Deps) *Server {
	s := &Server{d: d, log: d.Log.Named("api"), refusals: newRefusalLimiter()}
	if d.Raft != nil && d.Raft.Raft != nil {
		s.leader.watch(d.Raft.Raft)
	}
	return s
}

func (s *Server) isLeader() bool { return s.d.Raft.Raft.State() == raft.Leader }

// SubmitJob validates a pipeline and commits it as a job.
func (s *Server) SubmitJob(ctx context.Context, req *gv1.SubmitJobRequest) (*gv1.SubmitJobResponse, error) {
	js := req.GetSpec()
	switch {
	case req.GetSpecYaml() != "" && js != nil:
		return nil, status.Error(codes.InvalidArgument, "spec and spec_yaml: give one, not both")
	case req.GetSpecYaml() != "":
		parsed, err := spec.Parse([]byte(req.GetSpecYaml()))
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		js = parsed
	case js == nil:
		return nil, status.Error(codes.InvalidArgument, "spec: a pipeline is required (spec or spec_yaml)")
	default:
		if err := spec.Validate(js); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if err := s.checkSecrets(js); err != nil {
		return nil, err
	}
	if len(req.GetIdempotencyKey()) > 256 {
		return nil, status.Error(codes.InvalidArgument, "idempotency_key: longer than 256 characters")
	}
	job := &gv1.Job{Id: NewJobID(), Spec: js, IdempotencyKey: req.GetIdempotencyKey()}
	if c := CallerFrom(ctx); c != nil && c.Token != nil {
		job.Owner = c.Token.GetId()
	}
	for _, t := range js.Tasks {
		job.Tasks = append(job.Tasks, &gv1.Task{Name: t.Name, Spec: t})
	}
	cmd := s.command(ctx, &gv1.Command{Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: job}}})
	var res fsm.Result
	var err error
	if s.d.Dispatcher != nil {
		// Its runnable tasks may be assigned in the same commit.
		res, err = s.d.Dispatcher.Submit(ctx, cmd)
	} else {
		res, err = s.d.Proposer.ProposeOne(ctx, cmd)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	j, ok := s.d.FSM.JobIn(res.JobID, req.GetView())
	if !ok {
		return nil, status.Errorf(codes.Internal, "job %s committed but not found", res.JobID)
	}
	return &gv1.SubmitJobResponse{Job: j, Existing: res.Existing}, nil
}

// GetJob returns one job.
func (s *Server) GetJob(ctx context.Context, req *gv1.GetJobRequest) (*gv1.GetJobResponse, error) {
	j, ok := s.d.FSM.JobIn(req.GetJobId(), req.GetView())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "job_id: no job %q", req.GetJobId())
	}
	return &gv1.GetJobResponse{Job: j}, nil
}

// ListJobs lists the newest jobs.
func (s *Server) ListJobs(ctx context.Context, req *gv1.ListJobsRequest) (*gv1.ListJobsResponse, error) {
	limit := int(req.GetLimit())
	if limit < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit: must not be negative")
	}
	if limit == 0 {
		limit = 100
	}
	jobs, total, truncated := s.d.FSM.JobsPage(req.GetStates(), limit, maxListBytes, req.GetView())
	return &gv1.ListJobsResponse{Jobs: jobs, Total: int32(min(total, math.MaxInt32)), Truncated: truncated}, nil
}

// maxListBytes bounds a listing's answer below gRPC's default message size
// (4 MiB), which clients refuse to receive past.
const maxListBytes = 3 << 20

// WatchJob streams the job after every change until it is final.
func (s *Server) WatchJob(req *gv1.WatchJobRequest, stream gv1.GantryService_WatchJobServer) error {
	var sent uint64
	for {
		changed := s.d.FSM.Changed()
		v, ok := s.d.FSM.JobVersion(req.GetJobId())
		if !ok {
			return status.Errorf(codes.NotFound, "job_id: no job %q", req.GetJobId())
		}
		if v != sent {
			j, _ := s.d.FSM.Job(req.GetJobId())
			if err := stream.Send(&gv1.WatchJobResponse{Job: j}); err != nil {
				return err
			}
			sent = j.Version
			if fsm.JobFinal(j.State) {
				return nil
			}
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-changed:
		}
	}
}

// CancelJob cancels a job and stops its running tasks.
func (s *Server) CancelJob(ctx context.Context, req *gv1.CancelJobRequest) (*gv1.CancelJobResponse, error) {
	if req.GetJobId() == "" {
		return nil, status.Error(codes.InvalidArgument, "job_id: required")
	}
	if c := CallerFrom(ctx); c != nil && c.Token != nil && c.Token.GetRole() < operator {
		if j, ok := s.d.FSM.Job(req.GetJobId()); ok && j.GetOwner() != c.Token.GetId() {
			return nil, status.Errorf(codes.PermissionDenied, "CancelJob: job %s was not submitted by token %s (%s); a developer cancels only its own jobs, an operator any", req.GetJobId(), c.Token.GetId(), c.Token.GetName())
		}
	}
	res, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_CancelJob{CancelJob: &gv1.CancelJobCommand{JobId: req.GetJobId(), Reason: req.GetReason()}}}))
	if err != nil {
		return nil, toStatus(err)
	}
	j, _ := s.d.FSM.Job(req.GetJobId())
	if len(res.Canceled) > 0 {
		agents := make([]string, len(res.Canceled))
		for i, ref := range res.Canceled {
			for _, t := range j.GetTasks() {
				if t.Name == ref.Task {
					agents[i] = t.Agent
				}
			}
		}
		s.d.Dispatcher.Cancel(res.Canceled, agents, "job canceled")
	}
	return &gv1.CancelJobResponse{Job: j}, nil
}

// ListAgents lists the agents this node has heard from.
func (s *Server) ListAgents(ctx context.Context, req *gv1.ListAgentsRequest) (*gv1.ListAgentsResponse, error) {
	resp := &gv1.ListAgentsResponse{}
	for _, a := range s.d.Dispatcher.Fleet().Agents(time.Now(), time.Hour) {
		resp.Agents = append(resp.Agents, &gv1.AgentStatus{
			Info:          a.Info,
			State:         a.State,
			LastHeartbeat: timestamppb.New(a.LastSeen),
			Running:       a.Running,
		})
	}
	return resp, nil
}

// DrainAgent tells an agent to finish its work and exit.
func (s *Server) DrainAgent(ctx context.Context, req *gv1.DrainAgentRequest) (*gv1.DrainAgentResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name: required")
	}
	if err := s.d.Dispatcher.Drain(req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &gv1.DrainAgentResponse{}, nil
}

// ClusterStatus describes the coordinators.
func (s *Server) ClusterStatus(ctx context.Context, req *gv1.ClusterStatusRequest) (*gv1.ClusterStatusResponse, error) {
	return s.d.Cluster.Status(ctx)
}

// AddNode adds a voter.
func (s *Server) AddNode(ctx context.Context, req *gv1.AddNodeRequest) (*gv1.AddNodeResponse, error) {
	if req.GetId() == "" || req.GetRaftAddr() == "" {
		return nil, status.Error(codes.InvalidArgument, "id and raft_addr: required")
	}
	if err := s.d.Raft.AddVoter(req.GetId(), req.GetRaftAddr(), 10*time.Second); err != nil {
		return nil, toStatus(err)
	}
	return &gv1.AddNodeResponse{}, nil
}

// RemoveNode removes a node from the configuration.
func (s *Server) RemoveNode(ctx context.Context, req *gv1.RemoveNodeRequest) (*gv1.RemoveNodeResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	if err := s.d.Raft.RemoveServer(req.GetId(), 10*time.Second); err != nil {
		return nil, toStatus(err)
	}
	return &gv1.RemoveNodeResponse{}, nil
}

// waitApplied waits (briefly) until the local replica has applied index, so
// a client that wrote through a follower reads its write there next.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	return s.waitUntil(ctx, func() bool { return s.d.FSM.AppliedIndex() >= index },
		fmt.Sprintf("the write committed at index %d but this node has not applied it yet", index))
}

// waitUntil waits up to 5 s, on every applied entry, for done.
func (s *Server) waitUntil(ctx context.Context, done func() bool, late string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		changed := s.d.FSM.Changed()
		if done() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return status.Error(codes.DeadlineExceeded, late)
		}
	}
}

// toStatus chooses the gRPC code for an internal error.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, fsm.ErrConflict), errors.Is(err, fsm.ErrStaleAttempt), errors.Is(err, consensus.ErrUpgrading):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, fsm.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, raft.ErrNotLeader), errors.Is(err, consensus.ErrTimeout):
		// Retrying is safe: submits carry idempotency keys.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewJobID returns a short, time-ordered, random job ID.
func NewJobID() string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}
