// Package console serves the operator console: a single-page web UI embedded
// in the binary (no network needed at run time), a small JSON API under
// /api/ and Server-Sent Events that keep the page live. It reaches the
// coordinator only through the public gRPC API, like any other client: the
// coordinator hands it the API of a client (package client) of itself.
// Users log in with an API token and every call sends it, so the API's
// roles decide what they may do (auth.go); the console answers only to the
// host names it knows (host.go).
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

//go:embed assets
var assets embed.FS

// Config tunes the console.
type Config struct {
	// Interval is how often the live overview (cluster, agents, queue,
	// jobs) is refreshed; only changes are sent to the browser.
	Interval time.Duration
	// CallTimeout bounds each unary API call.
	CallTimeout time.Duration
	// Hosts are the host names (a port, if given, is ignored) the console
	// answers to; IP literals always are (host.go).
	Hosts []string
	// SessionTTL is how long a login lasts (less if its token expires
	// sooner); MaxSessions bounds the sessions kept.
	SessionTTL  time.Duration
	MaxSessions int
}

// DefaultConfig refreshes the overview twice a second, answers to
// localhost, and keeps up to 1024 logins for 12 hours each.
func DefaultConfig() Config {
	return Config{
		Interval: 500 * time.Millisecond, CallTimeout: 5 * time.Second,
		Hosts:      []string{"localhost"},
		SessionTTL: 12 * time.Hour, MaxSessions: 1024,
	}
}

// Handler serves the console.
type Handler struct {
	cfg      Config
	client   gv1.GantryServiceClient
	log      *zap.Logger
	mux      *http.ServeMux
	hosts    hostSet
	sessions *sessions

	probeMu  sync.Mutex
	probedAt time.Time // when loginRequired last asked the API
	required bool
}

// New returns the console handler; mount it at "/". client is the Raw API
// of a client.Client (in a coordinator, of itself, with its honest reads
// and retries) without a token of its own: each call sends the token of
// the user's session (client.WithCallToken).
func New(cfg Config, client gv1.GantryServiceClient, log *zap.Logger) *Handler {
	h := &Handler{
		cfg: cfg, client: client, log: log.Named("console"), mux: http.NewServeMux(),
		hosts: newHostSet(cfg.Hosts), sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions),
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", noCache(files)))
	for _, page := range []string{"/{$}", "/jobs", "/jobs/{id}", "/apps", "/apps/{name}", "/projects", "/projects/{name}", "/queue", "/agents", "/cluster", "/audit"} {
		h.mux.HandleFunc("GET "+page, h.page(static))
	}
	h.mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(noCacheWriter(w), r, static, "login.html")
	})
	h.mux.HandleFunc("GET /api/session", h.getSession)
	h.mux.HandleFunc("POST /api/login", h.login)
	h.mux.HandleFunc("POST /api/logout", h.logout)

	// Everything else under /api/ needs a session (auth.go).
	api := func(pattern string, handler http.HandlerFunc) { h.mux.HandleFunc(pattern, h.authed(handler)) }
	api("GET /api/cluster", h.getCluster)
	api("GET /api/agents", h.getAgents)
	api("GET /api/queue", h.getQueue)
	api("GET /api/jobs", h.getJobs)
	api("GET /api/jobs/{id}", h.getJob)
	api("POST /api/jobs/{id}/cancel", h.cancelJob)
	api("POST /api/jobs/{id}/tasks/{task}/approve", h.approveTask)
	api("POST /api/jobs/{id}/tasks/{task}/reject", h.rejectTask)
	api("POST /api/agents/{name}/drain", h.drainAgent)
	api("GET /api/apps", h.getApps)
	api("GET /api/apps/{name}", h.getApp)
	api("POST /api/apps/{name}/sync", h.syncApp)
	api("POST /api/apps/{name}/rollback", h.rollbackApp)
	api("POST /api/apps/{name}/unpin", h.unpinApp)
	api("GET /api/projects", h.getProjects)
	api("GET /api/projects/{name}", h.getProject)
	api("POST /api/projects/{name}/run", h.runProject)
	api("POST /api/projects/{name}/builds/{number}/approve", h.approveBuild)
	api("POST /api/projects/{name}/builds/{number}/reject", h.rejectBuild)
	api("GET /api/audit", h.getAudit)

	api("GET /api/events", h.overviewEvents)
	api("GET /api/jobs/{id}/events", h.jobEvents)
	api("GET /api/jobs/{id}/logs", h.logEvents)
	api("GET /api/apps/{name}/events", h.appEvents)
	return h
}

// ServeHTTP serves the UI, the JSON API and the event streams, to Host
// headers the console answers to only.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
	if !h.checkHost(w, r) {
		return
	}
	h.mux.ServeHTTP(w, r)
}

// noCache makes browsers revalidate assets, so an upgraded binary's console
// is picked up at the next load.
func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(noCacheWriter(w), r)
	})
}

func noCacheWriter(w http.ResponseWriter) http.ResponseWriter {
	w.Header().Set("Cache-Control", "no-cache")
	return w
}
