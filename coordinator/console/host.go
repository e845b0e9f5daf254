package console

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Where requests come from. DNS rebinding lets a page of another site
// reach this address under a name its author controls, so the console
// answers only to Host headers that are IP literals (a page can name one
// only by going to that very address) or names it was configured with.
// Writes must come from the console's own pages (CSRF).

// hostSet holds the names the console answers to.
type hostSet map[string]bool

func newHostSet(names []string) hostSet {
	hs := hostSet{}
	for _, n := range names {
		if n = hostName(n); n != "" {
			hs[n] = true
		}
	}
	return hs
}

// hostName is the host of a Host header or configured name: lowercased,
// without port, brackets or a trailing dot.
func hostName(hostport string) string {
	host := strings.TrimSpace(hostport)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// allows reports whether the console answers to this Host header. The
// port does not count: rebinding is about the name.
func (hs hostSet) allows(hostport string) bool {
	host := hostName(hostport)
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return hs[host]
}

// checkHost answers 421 to a Host header the console does not answer to.
func (h *Handler) checkHost(w http.ResponseWriter, r *http.Request) bool {
	if h.hosts.allows(r.Host) {
		return true
	}
	msg := "Host " + quote(r.Host) + " is not a name this console answers to (a guard against DNS rebinding); use its IP address, localhost, or add the name to the coordinator's --http-hosts"
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeError(w, http.StatusMisdirectedRequest, msg)
	} else {
		http.Error(w, msg, http.StatusMisdirectedRequest)
	}
	return false
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// writeHeader is required on every write: a page of another origin cannot
// send it without a CORS preflight, which the console never grants.
const writeHeader = "X-Gantry-Console"

// checkWrite refuses writes that do not come from the console's own pages
// (CSRF, besides the SameSite=Strict session cookie): they carry
// writeHeader, and the browser says they come from this origin, by
// Sec-Fetch-Site: same-origin or, from browsers without it, by an Origin
// naming this host. (Under the console's Referrer-Policy a browser may send
// "Origin: null" with a same-origin POST.) The scheme is not compared, so
// that a proxy may end TLS in front of the console.
func (h *Handler) checkWrite(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get(writeHeader) == "" {
		writeError(w, http.StatusForbidden, "writes need the "+writeHeader+" header")
		return false
	}
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" {
		writeError(w, http.StatusForbidden, "cross-origin write refused (Sec-Fetch-Site: "+quote(site)+")")
		return false
	}
	o := r.Header.Get("Origin")
	if o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, r.Host) {
			writeError(w, http.StatusForbidden, "cross-origin write refused (Origin "+quote(o)+")")
			return false
		}
		return true
	}
	if site == "" {
		writeError(w, http.StatusForbidden, "writes need an Origin or Sec-Fetch-Site header, as browsers send them: use the console's pages")
		return false
	}
	return true
}
