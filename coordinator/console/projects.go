package console

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Projects (pipelines as code): the list, one project with its newest
// builds, building a ref now, and approving or rejecting a build held for
// approval. The API decides who may do what (RunProject: developer,
// ApproveBuild: operator). Its ProjectSummary carries no webhook secret, and
// the console passes on nothing else of a project.

func (h *Handler) getProjects(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.ListProjects(ctx, &gv1.ListProjectsRequest{})
	h.reply(w, resp, err)
}

// getProject reads ?limit=N builds (zero or none: the API's default, 50).
func (h *Handler) getProject(w http.ResponseWriter, r *http.Request) {
	req := &gv1.GetProjectRequest{Name: r.PathValue("name")}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want a number from 0 to 1000")
			return
		}
		req.Limit = int32(n)
	}
	ctx, cancel := h.call(r)
	defer cancel()
	resp, err := h.client.GetProject(ctx, req)
	h.reply(w, resp, err)
}

// runProject builds a ref now; the body is {"ref": "main"} (a branch, tag
// or commit), and an empty body or ref builds the default branch.
func (h *Handler) runProject(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	ref, err := readRef(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	name := r.PathValue("name")
	resp, err := h.client.RunProject(ctx, &gv1.RunProjectRequest{Name: name, Ref: ref})
	if err == nil {
		b := resp.GetBuild().GetBuild()
		h.log.Info("project build requested", zap.String("project", name), zap.String("ref", ref),
			zap.Uint64("build", b.GetNumber()), zap.String("job", b.GetJobId()))
	}
	h.reply(w, resp, err)
}

// readRef reads the ref of a run request: an empty body, or JSON.
func readRef(r *http.Request) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err != nil {
		return "", errors.New("body: unreadable")
	}
	if strings.TrimSpace(string(data)) == "" {
		return "", nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return "", errors.New(`body: send {"ref": "..."} as application/json`)
	}
	var body struct {
		Ref string `json:"ref"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return "", errors.New(`body: want {"ref": "..."}`)
	}
	return strings.TrimSpace(body.Ref), nil
}

func (h *Handler) approveBuild(w http.ResponseWriter, r *http.Request) {
	h.decideBuild(w, r, false)
}

func (h *Handler) rejectBuild(w http.ResponseWriter, r *http.Request) {
	h.decideBuild(w, r, true)
}

// decideBuild approves or rejects a build held for approval; the API
// refuses one that is not held, and callers below operator.
func (h *Handler) decideBuild(w http.ResponseWriter, r *http.Request, reject bool) {
	if !h.checkWrite(w, r) {
		return
	}
	n, err := strconv.ParseUint(r.PathValue("number"), 10, 64)
	if err != nil || n == 0 {
		writeError(w, http.StatusBadRequest, "number: want a build number (1, 2, ...)")
		return
	}
	ctx, cancel := h.call(r)
	defer cancel()
	name := r.PathValue("name")
	resp, err := h.client.ApproveBuild(ctx, &gv1.ApproveBuildRequest{Project: name, Number: n, Reject: reject})
	if err == nil {
		h.log.Info("project build decided", zap.String("project", name), zap.Uint64("build", n), zap.Bool("rejected", reject))
	}
	h.reply(w, resp, err)
}
