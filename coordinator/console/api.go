package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// marshal renders public API messages as the JSON mapping of protobuf
// (lowerCamelCase fields, enums by name, RFC 3339 times).
var marshal = protojson.MarshalOptions{}

// jobStates maps the short names the console uses in ?state= to enums.
var jobStates = map[string]gv1.JobState{
	"pending":   gv1.JobState_JOB_STATE_PENDING,
	"running":   gv1.JobState_JOB_STATE_RUNNING,
	"succeeded": gv1.JobState_JOB_STATE_SUCCEEDED,
	"failed":    gv1.JobState_JOB_STATE_FAILED,
	"canceled":  gv1.JobState_JOB_STATE_CANCELED,
}

func (h *Handler) call(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.cfg.CallTimeout)
}

func (h *Handler) getCluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	h.reply(w, resp, err)
}

func (h *Handler) getAgents(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ListAgents(ctx, &gv1.ListAgentsRequest{})
	h.reply(w, resp, err)
}

func (h *Handler) getQueue(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ListQueue(ctx, &gv1.ListQueueRequest{})
	h.reply(w, resp, err)
}

func (h *Handler) getJobs(w http.ResponseWriter, r *http.Request) {
	req, err := listJobsRequest(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ListJobs(ctx, req)
	h.reply(w, resp, err)
}

// listJobsRequest reads ?state=running,failed&limit=50. A listing shows
// no task specs (a job's page reads the whole job): it asks for the basic
// view, a fraction of the size.
func listJobsRequest(q url.Values) (*gv1.ListJobsRequest, error) {
	req := &gv1.ListJobsRequest{View: gv1.JobView_JOB_VIEW_BASIC}
	for _, s := range strings.Split(q.Get("state"), ",") {
		if s = strings.TrimSpace(strings.ToLower(s)); s == "" {
			continue
		}
		st, ok := jobStates[s]
		if !ok {
			return nil, errors.New("state: want pending, running, succeeded, failed or canceled")
		}
		req.States = append(req.States, st)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > 1000 {
			return nil, errors.New("limit: want a number from 0 to 1000")
		}
		req.Limit = int32(n)
	}
	return req, nil
}

func (h *Handler) getJob(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.GetJob(ctx, &gv1.GetJobRequest{JobId: r.PathValue("id")})
	h.reply(w, resp, err)
}

func (h *Handler) cancelJob(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.CancelJob(ctx, &gv1.CancelJobRequest{JobId: r.PathValue("id"), Reason: "canceled from the console"})
	if err == nil {
		h.log.Info("job canceled", zap.String("job", r.PathValue("id")))
	}
	h.reply(w, resp, err)
}

func (h *Handler) approveTask(w http.ResponseWriter, r *http.Request) { h.decideTask(w, r, false) }

func (h *Handler) rejectTask(w http.ResponseWriter, r *http.Request) { h.decideTask(w, r, true) }

// decideTask approves or rejects a job's waiting approval task; the API
// checks the roles the task names.
func (h *Handler) decideTask(w http.ResponseWriter, r *http.Request, reject bool) {
	if !h.checkWrite(w, r) {
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	req := &gv1.DecideTaskRequest{JobId: r.PathValue("id"), Task: r.PathValue("task"), Reject: reject, Comment: "decided in the console"}
	resp, err := h.client.DecideTask(ctx, req)
	if err == nil {
		h.log.Info("approval decided", zap.String("job", req.JobId), zap.String("task", req.Task), zap.Bool("rejected", reject))
	}
	h.reply(w, resp, err)
}

func (h *Handler) drainAgent(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.DrainAgent(ctx, &gv1.DrainAgentRequest{Name: r.PathValue("name")})
	if err == nil {
		h.log.Info("agent drain requested", zap.String("agent", r.PathValue("name")))
	}
	h.reply(w, resp, err)
}

func (h *Handler) getApps(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ListApps(ctx, &gv1.ListAppsRequest{})
	h.reply(w, resp, err)
}

func (h *Handler) getApp(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.GetApp(ctx, &gv1.GetAppRequest{Name: r.PathValue("name")})
	h.reply(w, resp, err)
}

func (h *Handler) syncApp(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	name := r.PathValue("name")
	resp, err := h.client.SyncApp(ctx, &gv1.SyncAppRequest{Name: name})
	if err == nil {
		h.log.Info("app sync requested", zap.String("app", name), zap.String("revision", resp.GetRevision()), zap.String("job", resp.GetJobId()))
	}
	h.reply(w, resp, err)
}

// rollbackApp reads ?revision=COMMIT (or a deploy id of the history).
func (h *Handler) rollbackApp(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	rev := strings.TrimSpace(r.URL.Query().Get("revision"))
	if rev == "" {
		writeError(w, http.StatusBadRequest, "revision: required (a commit deployed before, or a deploy id from the history)")
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	name := r.PathValue("name")
	resp, err := h.client.RollbackApp(ctx, &gv1.RollbackAppRequest{Name: name, Revision: rev})
	if err == nil {
		h.log.Info("app rollback requested", zap.String("app", name), zap.String("revision", resp.GetRevision()), zap.String("job", resp.GetJobId()))
	}
	h.reply(w, resp, err)
}

func (h *Handler) unpinApp(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	name := r.PathValue("name")
	resp, err := h.client.UnpinApp(ctx, &gv1.UnpinAppRequest{Name: name})
	if err == nil {
		h.log.Info("app unpinned", zap.String("app", name))
	}
	h.reply(w, resp, err)
}

// getAudit lists the audit log; the API lets admins only.
func (h *Handler) getAudit(w http.ResponseWriter, r *http.Request) {
	req, err := listAuditRequest(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ListAudit(ctx, req)
	h.reply(w, resp, err)
}

// listAuditRequest reads ?since=1h (or an RFC 3339 time; empty or "all":
// everything kept) and ?limit=500.
func listAuditRequest(q url.Values, now time.Time) (*gv1.ListAuditRequest, error) {
	req := &gv1.ListAuditRequest{}
	switch since := strings.TrimSpace(q.Get("since")); since {
	case "", "all":
	default:
		if t, err := time.Parse(time.RFC3339, since); err == nil {
			req.Since = timestamppb.New(t)
			break
		}
		d, err := time.ParseDuration(since)
		if err != nil || d <= 0 {
			return nil, errors.New("since: want a time (RFC 3339), a duration such as 1h, or all")
		}
		req.Since = timestamppb.New(now.Add(-d))
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > 1000 {
			return nil, errors.New("limit: want a number from 0 to 1000")
		}
		req.Limit = int32(n)
	}
	return req, nil
}

// reply writes a message, or the error with the HTTP status matching its
// gRPC code.
func (h *Handler) reply(w http.ResponseWriter, m proto.Message, err error) {
	if err != nil {
		st := status.Convert(err)
		writeError(w, httpStatus(st.Code()), st.Message())
		return
	}
	data, err := marshal.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(data)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}
