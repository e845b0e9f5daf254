package agent

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gantryci/gantry/agent/mask"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// checkAssignment checks the names of an assignment against the grammar of
// package name before any of them reaches a path (working directories,
// spool files), a subject or a log. The error names the field.
func checkAssignment(as *gv1.Assignment) error {
	ref := as.GetRef()
	if ref == nil {
		return errors.New("assignment.ref: required")
	}
	if err := name.Token(ref.GetJobId()); err != nil {
		return fmt.Errorf("assignment.ref.job_id: %w", err)
	}
	if err := name.Token(ref.GetTask()); err != nil {
		return fmt.Errorf("assignment.ref.task: %w", err)
	}
	if ref.GetAttempt() <= 0 {
		return fmt.Errorf("assignment.ref.attempt: %d, want a positive attempt", ref.GetAttempt())
	}
	// The job name only reaches the task's environment (GANTRY_JOB_NAME);
	// GitOps names deploy jobs "deploy-APP", which may hold '.'.
	if jn := as.GetJobName(); len(jn) > 2*name.MaxLen || strings.ContainsAny(jn, "\x00\n\r") {
		return fmt.Errorf("assignment.job_name: %q is not a job name", limit.Clip(jn, 80))
	}
	if d := as.GetSpec().GetDeploy(); d != nil {
		if err := name.Check(d.GetApp()); err != nil {
			return fmt.Errorf("assignment.spec.deploy.app: %w", err)
		}
		if err := name.Check(d.GetCluster()); err != nil {
			return fmt.Errorf("assignment.spec.deploy.cluster: %w", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(as.GetSecrets())) {
		if err := name.Token(k); err != nil {
			return fmt.Errorf("assignment.secrets: %w", err)
		}
		if n := len(as.GetSecrets()[k]); n > limit.SecretValue {
			return fmt.Errorf("assignment.secrets[%s]: %d bytes, more than the limit of %d", k, n, limit.SecretValue)
		}
	}
	return nil
}

// secretMasker masks every secret value of an assignment.
func secretMasker(as *gv1.Assignment) *mask.Masker {
	secrets := as.GetSecrets()
	values := make([][]byte, 0, len(secrets))
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		values = append(values, secrets[k])
	}
	return mask.New(values...)
}

// boundOutputs makes outputs fit what a coordinator takes (package limit):
// keys valid tokens, values masked, valid UTF-8 and at most
// limit.OutputValue bytes, at most limit.ReportOutputs of them. What does
// not fit is dropped and said through note.
func boundOutputs(outputs map[string]string, m *mask.Masker, note func(string)) map[string]string {
	if len(outputs) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(outputs)) {
		v := strings.ToValidUTF8(m.String(outputs[k]), "\uFFFD")
		switch {
		case name.Token(k) != nil:
			note(fmt.Sprintf("[gantry] output %q dropped: the name is not a valid token", limit.Clip(m.String(k), 80)))
		case len(v) > limit.OutputValue:
			note(fmt.Sprintf("[gantry] output %s dropped: %d bytes, more than the limit of %d", k, len(v), limit.OutputValue))
		case len(out) == limit.ReportOutputs:
			note(fmt.Sprintf("[gantry] output %s dropped: more than %d outputs", k, limit.ReportOutputs))
		default:
			out[k] = v
		}
	}
	return out
}

// reportError is the error string of a report: masked, valid UTF-8, and cut
// to limit.ReportError keeping its start and end.
func reportError(err error, m *mask.Masker) string {
	if err == nil {
		return ""
	}
	return limit.Clip(strings.ToValidUTF8(m.String(err.Error()), "\uFFFD"), limit.ReportError)
}
