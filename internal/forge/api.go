package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryci/gantry/internal/limit"
)

const (
	// maxResponse bounds what is read of one API response.
	maxResponse = 1 << 20
	// maxErrorBody bounds the response excerpt an HTTPError carries.
	maxErrorBody = 512
	// defaultTimeout is the whole-request timeout of the client New makes
	// when given none.
	defaultTimeout = 30 * time.Second
)

// api is the REST plumbing the three drivers share: one API root, one
// credential, bounded reads, errors without the token.
type api struct {
	root   string // API root, no trailing slash: http://host:3000/api/v1
	prefix string // root's path, for errors: /api/v1
	hc     *http.Client
	header http.Header // set on every request: credential, Accept
	token  string      // cut out of error bodies
}

func newAPI(root string, hc *http.Client, header http.Header, token string) (*api, error) {
	u, err := url.Parse(root)
	if err != nil {
		return nil, fmt.Errorf("forge API root %s: %w", limit.Prefix(root, 256), err)
	}
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout, CheckRedirect: sameHost}
	}
	header.Set("User-Agent", "gantry")
	return &api{root: strings.TrimRight(root, "/"), prefix: strings.TrimRight(u.EscapedPath(), "/"), hc: hc, header: header, token: token}, nil
}

// sameHost follows redirects only within the host asked: Go drops the
// Authorization header on a redirect elsewhere, but not GitLab's
// PRIVATE-TOKEN.
func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return http.ErrUseLastResponse // the 3xx comes back as an HTTPError
	}
	return nil
}

// call is one API request.
type call struct {
	method string
	path   string // under the API root, segments escaped: /repos/o/r/hooks
	query  url.Values
	in     any      // sent as JSON when not nil
	out    any      // a 2xx body is decoded into it when not nil
	redact []string // besides the token, cut out of error bodies
}

// do makes the call and returns the 2xx status; any other status is an
// *HTTPError, a request without an answer a *transportError.
func (a *api) do(ctx context.Context, c call) (int, error) {
	name := c.method + " " + a.prefix + c.path
	var body io.Reader
	if c.in != nil {
		b, err := json.Marshal(c.in)
		if err != nil {
			return 0, fmt.Errorf("%s: encode request: %w", name, err)
		}
		body = bytes.NewReader(b)
	}
	target := a.root + c.path
	if len(c.query) > 0 {
		target += "?" + c.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, c.method, target, body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	for k, v := range a.header {
		req.Header[k] = v
	}
	if c.in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, &transportError{err: err})
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return 0, fmt.Errorf("%s: read response: %w", name, &transportError{err: err})
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, &HTTPError{Method: c.method, Path: a.prefix + c.path, Status: resp.StatusCode, Body: a.excerpt(raw, c.redact)}
	}
	if len(raw) > maxResponse {
		return 0, fmt.Errorf("%s: response larger than %d bytes", name, maxResponse)
	}
	if c.out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(raw, c.out); err != nil {
			return 0, fmt.Errorf("%s: decode response: %w", name, err)
		}
	}
	return resp.StatusCode, nil
}

// excerpt is the start of an error response with secrets cut out. Secrets
// are cut from the whole body before it is shortened, so one straddling
// the cut cannot leave a piece behind.
func (a *api) excerpt(raw []byte, redact []string) string {
	s := strings.ToValidUTF8(string(raw), "\uFFFD")
	for _, secret := range append([]string{a.token}, redact...) {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return limit.Prefix(strings.TrimSpace(s), maxErrorBody-len("…"))
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }
