package kube

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// ErrStaleFence is wrapped when a newer deploy holds the application: the
// attempt's fencing token is lower than the one recorded in the inventory.
var ErrStaleFence = errors.New("this attempt is stale")

// ErrUnhealthy is wrapped when a rollout did not become healthy in time or
// failed (progress deadline exceeded, job failed).
var ErrUnhealthy = errors.New("rollout did not become healthy")

// contentError marks an error caused by what is deployed (a malformed
// manifest, an unknown kind), as opposed to the cluster being unreachable.
type contentError struct{ err error }

func (e *contentError) Error() string { return e.err.Error() }
func (e *contentError) Unwrap() error { return e.err }

func content(err error) error {
	if err == nil {
		return nil
	}
	return &contentError{err: err}
}

// classify tells job failures (the content or the rollout is wrong; running
// it elsewhere would fail the same way) from infrastructure failures (the
// API server could not be reached or failed; another attempt may succeed).
func classify(err error) gv1.FailureClass {
	var ce *contentError
	switch {
	case err == nil:
		return gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED
	case errors.As(err, &ce), errors.Is(err, ErrStaleFence), errors.Is(err, ErrUnhealthy),
		errors.Is(err, context.Canceled), meta.IsNoMatchError(err):
		return gv1.FailureClass_FAILURE_CLASS_JOB
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := int(status.Status().Code)
		switch {
		case code == http.StatusTooManyRequests, code == http.StatusRequestTimeout, code >= 500:
			return gv1.FailureClass_FAILURE_CLASS_INFRA
		case code >= 400:
			return gv1.FailureClass_FAILURE_CLASS_JOB
		}
	}
	// Transport errors: connection refused, TLS, timeouts.
	return gv1.FailureClass_FAILURE_CLASS_INFRA
}
