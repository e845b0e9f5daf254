package forge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

var (
	// ErrIgnored is returned by Parse for a valid delivery that is nothing
	// to build: a ping, a closed or labelled pull request, a branch or tag
	// deletion, an event type Gantry does not build. The wrapping error
	// says which.
	ErrIgnored = errors.New("webhook delivery not built")
	// ErrSignature is returned by Verify when a delivery's signature or
	// token is missing or does not match, or the project has no secret.
	ErrSignature = errors.New("webhook signature not verified")
	// ErrPayload is returned for a delivery whose headers or body do not
	// look like the event they claim; the wrapping error names the header
	// or JSON field.
	ErrPayload = errors.New("malformed webhook payload")
)

// HTTPError is a forge API answer outside 2xx.
type HTTPError struct {
	Method string
	// Path is the request's path under the forge's web root, without the
	// query; it never holds the token.
	Path   string
	Status int
	// Body is the start of the response (at most 512 bytes), with the
	// token and any hook secret cut out.
	Body string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("forge API %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Retryable tells whether a failed API call may succeed if made again: a
// transport failure or timeout, or an HTTP 408, 429 or 5xx. Other 4xx
// answers (bad token, no such repository, validation) will not change, and
// neither will a cancelled context or a response that could not be
// decoded.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if he, ok := errors.AsType[*HTTPError](err); ok {
		return he.Status == http.StatusRequestTimeout || he.Status == http.StatusTooManyRequests || he.Status >= 500
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	_, isNet := errors.AsType[net.Error](err)
	_, isTransport := errors.AsType[*transportError](err)
	return isNet || isTransport
}

// transportError marks a request that got no HTTP answer.
type transportError struct {
	err error
}

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// statusIs tells whether err is an HTTPError with the given status.
func statusIs(err error, status int) bool {
	he, ok := errors.AsType[*HTTPError](err)
	return ok && he.Status == status
}
