package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fakeAudit is the fake API's audit log, oldest first: a job canceled two
// hours ago and a refused drain ten minutes ago.
func fakeAudit(now time.Time) []*gv1.AuditEvent {
	return []*gv1.AuditEvent{
		{At: timestamppb.New(now.Add(-2 * time.Hour)), Actor: &gv1.Actor{TokenId: "admin", Name: "alice", Role: gv1.Role_ROLE_ADMIN, Peer: "10.0.0.1:5000"},
			Method: "CancelJob", Target: "job j1", Result: "ok", Index: 7},
		{At: timestamppb.New(now.Add(-10 * time.Minute)), Actor: &gv1.Actor{TokenId: "viewer", Name: "victor", Role: gv1.Role_ROLE_VIEWER, Peer: "10.0.0.2:5000"},
			Method: "DrainAgent", Target: "agent a1", Result: "PermissionDenied: DrainAgent needs role operator or above", Index: 9},
	}
}

// ListAudit answers like the API: the events at or after since, at most
// limit of the newest, oldest first.
func (f *fakeAPI) ListAudit(_ context.Context, in *gv1.ListAuditRequest) (*gv1.ListAuditResponse, error) {
	var out []*gv1.AuditEvent
	for _, e := range fakeAudit(time.Now()) {
		if in.Since == nil || !e.At.AsTime().Before(in.Since.AsTime()) {
			out = append(out, e)
		}
	}
	if n := int(in.Limit); n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return &gv1.ListAuditResponse{Events: out}, nil
}

func TestAuditForAdminsOnly(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	admin := tc.login(adminToken)
	for _, tt := range []struct {
		query   string
		methods []string
	}{
		{"", []string{"CancelJob", "DrainAgent"}},
		{"?since=all", []string{"CancelJob", "DrainAgent"}},
		{"?since=1h", []string{"DrainAgent"}},
		{"?since=" + url.QueryEscape(time.Now().Add(-3*time.Hour).Format(time.RFC3339)), []string{"CancelJob", "DrainAgent"}},
		{"?limit=1", []string{"DrainAgent"}},
	} {
		resp, raw := tc.get(admin, "/api/audit"+tt.query)
		var body struct {
			Events []struct{ Method string }
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(raw), &body) != nil {
			t.Errorf("GET /api/audit%s as admin: %d %s, want 200 with events", tt.query, resp.StatusCode, raw)
			continue
		}
		var methods []string
		for _, e := range body.Events {
			methods = append(methods, e.Method)
		}
		if strings.Join(methods, ",") != strings.Join(tt.methods, ",") {
			t.Errorf("GET /api/audit%s as admin: events %v, want %v", tt.query, methods, tt.methods)
		}
	}
	if _, raw := tc.get(admin, "/api/audit?since=1h"); !strings.Contains(raw, `"name":"victor"`) || !strings.Contains(raw, `"role":"ROLE_VIEWER"`) ||
		!strings.Contains(raw, `"peer":"10.0.0.2:5000"`) || !strings.Contains(raw, `"target":"agent a1"`) || !strings.Contains(raw, `"result":"PermissionDenied: `) {
		t.Errorf("GET /api/audit?since=1h: %s, want who, role, peer, target and result", raw)
	}
	for _, q := range []string{"?since=yesterday", "?since=-1h", "?limit=5000"} {
		if resp, raw := tc.get(admin, "/api/audit"+q); resp.StatusCode != http.StatusBadRequest || !strings.Contains(raw, `"error"`) {
			t.Errorf("GET /api/audit%s: %d %s, want 400 with an error", q, resp.StatusCode, raw)
		}
	}

	viewer := tc.login(viewerToken)
	resp, raw := tc.get(viewer, "/api/audit")
	var e map[string]string
	if resp.StatusCode != http.StatusForbidden || json.Unmarshal([]byte(raw), &e) != nil || !strings.Contains(e["error"], "ListAudit needs role admin") {
		t.Errorf("GET /api/audit as a viewer: %d %s, want 403 with the API's refusal", resp.StatusCode, raw)
	}
	if strings.Contains(raw, "CancelJob") {
		t.Errorf("GET /api/audit as a viewer showed events: %s", raw)
	}
}
