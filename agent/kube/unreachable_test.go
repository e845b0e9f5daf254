package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestDeployToUnreachableClusterIsInfra(t *testing.T) {
	t.Parallel()
	c, err := Open("down", unreachableKubeconfig(t), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res := c.Deploy(t.Context(), DeployRequest{
		Spec:  &gv1.DeploySpec{App: "demo", Source: &gv1.ManifestSource{Inline: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"}},
		Fence: 1, WorkDir: t.TempDir(),
	}, &lines{t: t})
	if res.Class != gv1.FailureClass_FAILURE_CLASS_INFRA || res.Err == nil {
		t.Fatalf("result = %v %v, want an infrastructure failure", res.Class, res.Err)
	}
}

func TestDeployMalformedIsJobFailure(t *testing.T) {
	t.Parallel()
	c, err := Open("down", unreachableKubeconfig(t), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res := c.Deploy(t.Context(), DeployRequest{
		Spec:  &gv1.DeploySpec{App: "demo", Source: &gv1.ManifestSource{Inline: "kind: [\n"}},
		Fence: 1, WorkDir: t.TempDir(),
	}, &lines{t: t})
	if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(res.Err.Error(), "inline manifests: document 1") {
		t.Fatalf("result = %v %v, want a job failure naming the document", res.Class, res.Err)
	}
}

func TestDeployCanceled(t *testing.T) {
	t.Parallel()
	c, err := Open("down", unreachableKubeconfig(t), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := c.Deploy(ctx, DeployRequest{
		Spec:  &gv1.DeploySpec{App: "demo", Source: &gv1.ManifestSource{Inline: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"}},
		Fence: 1, WorkDir: t.TempDir(),
	}, &lines{t: t})
	if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.HasPrefix(res.Err.Error(), "canceled") {
		t.Fatalf("result = %v %v, want a job failure: canceled", res.Class, res.Err)
	}
}

func TestWatchUnreachableReportsError(t *testing.T) {
	t.Parallel()
	c, err := Open("down", unreachableKubeconfig(t), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	reports := make(chan *gv1.DriftReport, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, "demo", "demo", func(r *gv1.DriftReport) { reports <- r })
	}()
	select {
	case r := <-reports:
		if r.GetError() == "" || r.GetApp() != "demo" || r.GetObservedAt() == nil {
			t.Fatalf("report = %v, want an error", r)
		}
		t.Logf("report error: %s", r.GetError())
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10s")
	}
	cancel()
	<-done
}
