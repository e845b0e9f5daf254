// Package console serves the operator console: a single-page web UI embedded
// in the binary (no network needed at run time), a small JSON API under
// /api/ and Server-Sent Events that keep the page live. It reaches the
// coordinator only through the public gRPC API, like any other client: the
// coordinator hands it the API of a client (package client) of itself.
package console

import (
	"embed"
	"io/fs"
	"net/http"
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
}

// DefaultConfig refreshes the overview twice a second.
func DefaultConfig() Config {
	return Config{Interval: 500 * time.Millisecond, CallTimeout: 5 * time.Second}
}

// Handler serves the console.
type Handler struct {
	cfg    Config
	client gv1.GantryServiceClient
	log    *zap.Logger
	mux    *http.ServeMux
}

// New returns the console handler; mount it at "/". In a coordinator,
// client is the Raw API of a client.Client, with its honest reads and
// retries.
func New(cfg Config, client gv1.GantryServiceClient, log *zap.Logger) *Handler {
	h := &Handler{cfg: cfg, client: client, log: log.Named("console"), mux: http.NewServeMux()}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", noCache(files)))
	for _, page := range []string{"/{$}", "/jobs", "/jobs/{id}", "/apps", "/apps/{name}", "/queue", "/agents", "/cluster"} {
		h.mux.HandleFunc("GET "+page, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFileFS(noCacheWriter(w), r, static, "index.html")
		})
	}

	h.mux.HandleFunc("GET /api/cluster", h.getCluster)
	h.mux.HandleFunc("GET /api/agents", h.getAgents)
	h.mux.HandleFunc("GET /api/queue", h.getQueue)
	h.mux.HandleFunc("GET /api/jobs", h.getJobs)
	h.mux.HandleFunc("GET /api/jobs/{id}", h.getJob)
	h.mux.HandleFunc("POST /api/jobs/{id}/cancel", h.cancelJob)
	h.mux.HandleFunc("POST /api/agents/{name}/drain", h.drainAgent)
	h.mux.HandleFunc("GET /api/apps", h.getApps)
	h.mux.HandleFunc("GET /api/apps/{name}", h.getApp)
	h.mux.HandleFunc("POST /api/apps/{name}/sync", h.syncApp)
	h.mux.HandleFunc("POST /api/apps/{name}/rollback", h.rollbackApp)
	h.mux.HandleFunc("POST /api/apps/{name}/unpin", h.unpinApp)

	h.mux.HandleFunc("GET /api/events", h.overviewEvents)
	h.mux.HandleFunc("GET /api/jobs/{id}/events", h.jobEvents)
	h.mux.HandleFunc("GET /api/jobs/{id}/logs", h.logEvents)
	h.mux.HandleFunc("GET /api/apps/{name}/events", h.appEvents)
	return h
}

// ServeHTTP serves the UI, the JSON API and the event streams.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
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
