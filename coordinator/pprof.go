package coordinator

import (
	"net/http"
	"net/http/pprof"
)

// mountPprof serves Go's profiles under /debug/pprof/ on the HTTP address,
// so an operator can profile a live coordinator, behind guard: admins only
// (console.Handler.Admin), since profiles show the process's command line
// and memory, and CPU profiles and traces cost the node while they run.
func mountPprof(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	for path, h := range map[string]http.HandlerFunc{
		"/debug/pprof/":        pprof.Index,
		"/debug/pprof/cmdline": pprof.Cmdline,
		"/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol":  pprof.Symbol,
		"/debug/pprof/trace":   pprof.Trace,
	} {
		mux.Handle("GET "+path, guard(h))
	}
}
