package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// health is the state of one live workload.
type health int

const (
	healthy health = iota
	progressing
	failed
)

// isWorkload reports whether objects of the kind have a rollout to wait for.
// Other kinds are healthy once applied.
func isWorkload(r objRef) bool {
	switch {
	case r.Group == "apps" && (r.Kind == "Deployment" || r.Kind == "StatefulSet" || r.Kind == "DaemonSet"),
		r.Group == "batch" && r.Kind == "Job":
		return true
	}
	return false
}

// workloadHealth evaluates a live workload; minGeneration is the generation
// Gantry's apply produced (0 when unknown), so that a stale cached copy is
// never taken for the new rollout. msg says what is awaited or what failed.
func workloadHealth(o *unstructured.Unstructured, minGeneration int64) (health, string) {
	if o.GetGeneration() < minGeneration {
		return progressing, fmt.Sprintf("generation %d not yet seen", minGeneration)
	}
	r := refOf(o)
	switch {
	case r.Group == "apps" && r.Kind == "Deployment":
		return deploymentHealth(o)
	case r.Group == "apps" && r.Kind == "StatefulSet":
		return statefulSetHealth(o)
	case r.Group == "apps" && r.Kind == "DaemonSet":
		return daemonSetHealth(o)
	case r.Group == "batch" && r.Kind == "Job":
		return jobHealth(o)
	}
	return healthy, ""
}

func num(o *unstructured.Unstructured, path ...string) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(o.Object, path...)
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

func str(o *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(o.Object, path...)
	return s
}

// condition returns the status and reason of the condition of type t.
func condition(o *unstructured.Unstructured, t string) (status, reason string) {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == t {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			return s, r
		}
	}
	return "", ""
}

// observed reports whether the controller has seen the latest spec.
func observed(o *unstructured.Unstructured) (bool, string) {
	if og := num(o, "status", "observedGeneration"); og < o.GetGeneration() {
		return false, fmt.Sprintf("generation %d not yet observed (at %d)", o.GetGeneration(), og)
	}
	return true, ""
}

// desiredReplicas is spec.replicas, defaulting to 1.
func desiredReplicas(o *unstructured.Unstructured) int64 {
	if v, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas"); ok && v != nil {
		return num(o, "spec", "replicas")
	}
	return 1
}

// deploymentHealth follows kubectl rollout status, and also requires the
// Available condition.
func deploymentHealth(o *unstructured.Unstructured) (health, string) {
	if ok, msg := observed(o); !ok {
		return progressing, msg
	}
	if s, reason := condition(o, "Progressing"); s == "False" && reason == "ProgressDeadlineExceeded" {
		return failed, "progress deadline exceeded"
	}
	want := desiredReplicas(o)
	updated := num(o, "status", "updatedReplicas")
	total := num(o, "status", "replicas")
	available := num(o, "status", "availableReplicas")
	// Available counts old replicas too; those still running are assumed
	// available, which makes the estimate of updated ones a lower bound.
	updatedAvailable := max(0, available-(total-updated))
	switch {
	case updated < want:
		return progressing, fmt.Sprintf("%d of %d replicas updated", updated, want)
	case updatedAvailable < want:
		return progressing, fmt.Sprintf("%d of %d updated replicas available", updatedAvailable, want)
	case total > updated:
		return progressing, fmt.Sprintf("%d old replicas pending termination", total-updated)
	}
	if s, _ := condition(o, "Available"); s != "True" {
		return progressing, "not Available yet"
	}
	return healthy, ""
}

func statefulSetHealth(o *unstructured.Unstructured) (health, string) {
	if ok, msg := observed(o); !ok {
		return progressing, msg
	}
	want := desiredReplicas(o)
	if ready := num(o, "status", "readyReplicas"); ready < want {
		return progressing, fmt.Sprintf("%d of %d replicas ready", ready, want)
	}
	rolling := str(o, "spec", "updateStrategy", "type")
	if rolling != "" && rolling != "RollingUpdate" {
		return healthy, "" // OnDelete: pods are replaced by hand
	}
	if updated := num(o, "status", "updatedReplicas"); updated < want {
		return progressing, fmt.Sprintf("%d of %d replicas updated", updated, want)
	}
	if cur, upd := str(o, "status", "currentRevision"), str(o, "status", "updateRevision"); cur != upd {
		return progressing, fmt.Sprintf("revision %s not yet current", upd)
	}
	return healthy, ""
}

func daemonSetHealth(o *unstructured.Unstructured) (health, string) {
	if ok, msg := observed(o); !ok {
		return progressing, msg
	}
	want := num(o, "status", "desiredNumberScheduled")
	if updated := num(o, "status", "updatedNumberScheduled"); updated < want {
		return progressing, fmt.Sprintf("%d of %d pods updated", updated, want)
	}
	if available := num(o, "status", "numberAvailable"); available < want {
		return progressing, fmt.Sprintf("%d of %d updated pods available", available, want)
	}
	return healthy, ""
}

func jobHealth(o *unstructured.Unstructured) (health, string) {
	if s, reason := condition(o, "Failed"); s == "True" {
		return failed, "job failed: " + reason
	}
	if s, _ := condition(o, "Complete"); s == "True" {
		return healthy, ""
	}
	return progressing, fmt.Sprintf("%d succeeded, %d active", num(o, "status", "succeeded"), num(o, "status", "active"))
}
