package coordinator

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantryci/gantry/coordinator/console"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := s.Ready(); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("POST /hooks/git", s.handleGitHook)
	ccfg := console.DefaultConfig()
	ccfg.Hosts = s.httpHosts()
	con := console.New(ccfg, s.self.Raw(), s.log)
	mountPprof(mux, con.Admin)
	mux.Handle("/", con)
	return mux
}

// Ready reports whether the node serves (what /readyz answers), and why
// not: its replica caught up, a leader known, NATS connected, the log
// stream there, and on a follower the leader's forwarding reachable.
func (s *Server) Ready() (bool, string) {
	addr, _ := s.node.Raft.LeaderWithID()
	ok, why := s.ready()
	switch {
	case !ok:
		return false, why
	case addr == "":
		return false, "no raft leader"
	case !s.nc.IsConnected():
		return false, "nats disconnected"
	case !s.logStreamReady.Load():
		return false, "log stream not ready"
	case !s.forwardReady():
		return false, "the leader's forwarding subscription has not reached this node's NATS server yet"
	case s.cfg.BootstrapToken != "" && !s.cfg.Insecure && s.fsm.TokenCount() == 0:
		// The leader commits it a moment after its election; until then
		// the token a user was just given is refused.
		return false, "the bootstrap token is not committed yet"
	}
	return true, ""
}

// httpHosts are the names the console and the profiles answer to:
// localhost, the HTTP address's host (IP addresses always pass) and
// Config.HTTPHosts.
func (s *Server) httpHosts() []string {
	hosts := []string{"localhost"}
	if h, _, err := net.SplitHostPort(s.cfg.HTTPAddr); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return append(hosts, s.cfg.HTTPHosts...)
}

// hostName matches a DNS name.
var hostName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$`)

// validHTTPHosts checks Config.HTTPHosts: DNS names, each with an optional
// port (which the check ignores).
func validHTTPHosts(hosts []string) error {
	for _, h := range hosts {
		name := h
		if n, port, err := net.SplitHostPort(h); err == nil {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return fmt.Errorf("http hosts: %q: bad port", h)
			}
			name = n
		}
		if len(name) > 253 || !hostName.MatchString(name) {
			return fmt.Errorf("http hosts: %q: want a host name such as console.example.com (no scheme, path or wildcard)", h)
		}
	}
	return nil
}

func (s *Server) metricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Agent gauges are computed at scrape time from the fleet view.
		s.metrics.Agents.Reset()
		for _, a := range s.disp.Fleet().Agents(time.Now(), 0) {
			s.metrics.Agents.WithLabelValues(agentStateName(a.State)).Inc()
		}
		h.ServeHTTP(w, r)
	})
}

func agentStateName(st gv1.AgentState) string {
	switch st {
	case gv1.AgentState_AGENT_STATE_ACTIVE:
		return "active"
	case gv1.AgentState_AGENT_STATE_DRAINING:
		return "draining"
	case gv1.AgentState_AGENT_STATE_LOST:
		return "lost"
	}
	return "unknown"
}

// loopback turns a listener address on all interfaces into one on loopback,
// for this process to dial itself.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
