package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Login. A user logs in with an API token (POST /api/login); the console
// asks the API who the token is (WhoAmI) and keeps it in a server-side
// session (session.go). Every call of /api/ then sends the session's token,
// so the API's roles apply to console users as to CLI users: the console
// grants nothing itself. A cluster without any token (a coordinator run
// without ACL) answers calls without one, and the console works without a
// login there, as the API does.

// sessionCookie holds the session's id, never the token.
const sessionCookie = "gantry_session"

// probeTTL is how long the console trusts its last look at whether the
// cluster needs a login. A stale answer costs no access: calls without a
// token are still the API's to refuse.
const probeTTL = 2 * time.Second

// sessionInfo is the answer of GET /api/session and POST /api/login.
type sessionInfo struct {
	// Required: the cluster has tokens, so the console needs a login.
	Required bool `json:"required"`
	// Name and Role describe the logged-in token; empty without a session.
	Name      string `json:"name,omitempty"`
	Role      string `json:"role,omitempty"`
	ExpiresAt string `json:"expiresAt,omitempty"`
}

func roleName(r gv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func (s *session) info() sessionInfo {
	return sessionInfo{Required: true, Name: s.name, Role: roleName(s.role), ExpiresAt: s.expires.UTC().Format(time.RFC3339)}
}

// current returns the request's session id and live session (nil when it
// has none).
func (h *Handler) current(r *http.Request) (string, *session) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", nil
	}
	return c.Value, h.sessions.get(c.Value, time.Now())
}

// loginRequired reports whether the cluster has tokens, which is when the
// API refuses a call without one as Unauthenticated. Other failures are
// returned: the console cannot tell.
func (h *Handler) loginRequired(ctx context.Context) (bool, error) {
	h.probeMu.Lock()
	if !h.probedAt.IsZero() && time.Since(h.probedAt) < probeTTL {
		required := h.required
		h.probeMu.Unlock()
		return required, nil
	}
	h.probeMu.Unlock()
	ctx, cancel := context.WithTimeout(client.WithCallToken(ctx, ""), h.cfg.CallTimeout)
	defer cancel()
	_, err := h.client.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	required := false
	switch status.Code(err) {
	case codes.OK:
	case codes.Unauthenticated:
		required = true
	default:
		return false, err
	}
	h.probeMu.Lock()
	h.required, h.probedAt = required, time.Now()
	h.probeMu.Unlock()
	return required, nil
}

// authed runs an /api/ handler with the session's token on its request's
// context, so that every API call it makes sends it; the context ends with
// the session (logout, expiry), which ends event streams too. Without a
// session it answers 401, unless the cluster needs no login.
func (h *Handler) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, s := h.current(r)
		if s == nil {
			required, err := h.loginRequired(r.Context())
			if err != nil {
				h.reply(w, nil, err)
				return
			}
			if required {
				writeError(w, http.StatusUnauthorized, "not logged in: log in to the console with an API token")
				return
			}
			next(w, r.WithContext(client.WithCallToken(r.Context(), "")))
			return
		}
		ctx, cancel := context.WithDeadline(client.WithCallToken(r.Context(), s.token), s.expires)
		defer cancel()
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		next(w, r.WithContext(ctx))
	}
}

// page serves the single-page UI, or sends a browser without a session to
// the login page when the cluster needs one.
func (h *Handler) page(static fs.FS) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, s := h.current(r); s == nil {
			// A failed look serves the page; its API calls say what is wrong.
			if required, err := h.loginRequired(r.Context()); err == nil && required {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
		}
		http.ServeFileFS(noCacheWriter(w), r, static, "index.html")
	}
}

// getSession says whether the console needs a login and who is logged in.
// A session whose token the API no longer takes (revoked, expired) ends.
func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	if id, s := h.current(r); s != nil {
		ctx, cancel := context.WithTimeout(client.WithCallToken(r.Context(), s.token), h.cfg.CallTimeout)
		defer cancel()
		resp, err := h.client.WhoAmI(ctx, &gv1.WhoAmIRequest{})
		switch status.Code(err) {
		case codes.OK:
			info := s.info()
			info.Name, info.Role = resp.GetToken().GetName(), roleName(resp.GetToken().GetRole())
			writeJSON(w, info)
			return
		case codes.Unauthenticated:
			h.log.Info("console session ended: token refused", zap.String("name", s.name), zap.String("reason", status.Convert(err).Message()))
			h.sessions.end(id)
			http.SetCookie(w, clearCookie(r))
		default:
			h.reply(w, nil, err)
			return
		}
	}
	required, err := h.loginRequired(r.Context())
	if err != nil {
		h.reply(w, nil, err)
		return
	}
	writeJSON(w, sessionInfo{Required: required})
}

// login takes {"token": "gantry_..."}, asks the API who it is and starts
// a session. The API's refusal is the answer to a bad token.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, `send {"token": "..."} as application/json`)
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, `body: want {"token": "..."}`)
		return
	}
	token := strings.TrimSpace(body.Token)
	if !plausibleToken(token) {
		writeError(w, http.StatusBadRequest, "token: not an API token (they look like gantry_ID_SECRET)")
		return
	}
	ctx, cancel := context.WithTimeout(client.WithCallToken(r.Context(), token), h.cfg.CallTimeout)
	defer cancel()
	resp, err := h.client.WhoAmI(ctx, &gv1.WhoAmIRequest{})
	if err != nil {
		h.log.Info("console login refused", zap.String("remote", r.RemoteAddr), zap.String("code", status.Code(err).String()))
		h.reply(w, nil, err)
		return
	}
	if old, err := r.Cookie(sessionCookie); err == nil {
		h.sessions.end(old.Value)
	}
	id, s := h.sessions.create(token, resp.GetToken(), time.Now())
	http.SetCookie(w, sessionCookieFor(r, id, s.expires))
	h.log.Info("console login", zap.String("token", resp.GetToken().GetId()), zap.String("name", s.name),
		zap.String("role", roleName(s.role)), zap.String("remote", r.RemoteAddr))
	writeJSON(w, s.info())
}

// logout ends the request's session, if any, and clears its cookie.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.checkWrite(w, r) {
		return
	}
	if id, s := h.current(r); s != nil {
		h.log.Info("console logout", zap.String("name", s.name), zap.String("remote", r.RemoteAddr))
		h.sessions.end(id)
	}
	http.SetCookie(w, clearCookie(r))
	writeJSON(w, struct{}{})
}

// plausibleToken checks what can be sent as gRPC metadata: printable
// ASCII without spaces, of a sane length. The API judges the rest.
func plausibleToken(t string) bool {
	if t == "" || len(t) > 512 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return false
		}
	}
	return true
}

// sessionCookieFor is the session's cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure when the console
// is served over TLS, for the whole console.
func sessionCookieFor(r *http.Request, id string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		Expires: expires, MaxAge: max(1, int(time.Until(expires)/time.Second)),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	}
}

func clearCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// Admin guards next for admins only (Go's profiles under /debug/pprof/):
// the Host must be one the console answers to, and the caller must send an
// admin token, as "Authorization: Bearer TOKEN" or through a console
// session. A cluster without tokens lets everyone through, as its API does.
func (h *Handler) Admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.checkHost(w, r) {
			return
		}
		token := ""
		if a := r.Header.Get("Authorization"); a != "" {
			t, ok := strings.CutPrefix(a, "Bearer ")
			if !ok || !plausibleToken(strings.TrimSpace(t)) {
				http.Error(w, `authorization: want "Bearer TOKEN"`, http.StatusUnauthorized)
				return
			}
			token = strings.TrimSpace(t)
		} else if _, s := h.current(r); s != nil {
			token = s.token
		}
		if token == "" {
			required, err := h.loginRequired(r.Context())
			if err != nil {
				st := status.Convert(err)
				http.Error(w, st.Message(), httpStatus(st.Code()))
				return
			}
			if !required {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
			http.Error(w, "this needs an admin token: send Authorization: Bearer TOKEN, or log in to the console", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(client.WithCallToken(r.Context(), token), h.cfg.CallTimeout)
		resp, err := h.client.WhoAmI(ctx, &gv1.WhoAmIRequest{})
		cancel()
		if err != nil {
			st := status.Convert(err)
			http.Error(w, st.Message(), httpStatus(st.Code()))
			return
		}
		if t := resp.GetToken(); t.GetRole() < gv1.Role_ROLE_ADMIN {
			http.Error(w, fmt.Sprintf("this needs role admin; token %s (%s) has role %s", t.GetId(), t.GetName(), roleName(t.GetRole())), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
