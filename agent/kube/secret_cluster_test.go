package kube

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gantryci/gantry/internal/gitsrc"
	"github.com/gantryci/gantry/internal/gitsrc/gitsrctest"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestLoadSourceFromPrivateGit loads manifests from a repository that
// wants the token of the source's secret; a secret missing from the
// assignment is a job failure naming the field.
func TestLoadSourceFromPrivateGit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root := t.TempDir()
	repo := filepath.Join(root, "manifests")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(filepath.Join(repo, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repo, "deploy", "cm.yaml"), []byte(configMapYAML("private")), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "one")
	head := git("rev-parse", "HEAD")
	url := gitsrctest.Serve(t, root, "deployer", "s3cret-pw") + "/manifests"
	src := &gv1.ManifestSource{Git: &gv1.GitSource{Url: url, Revision: "main", Secret: "repo"}, Path: "deploy"}

	objs, rev, err := loadSource(t.Context(), src, t.TempDir(), map[string][]byte{"repo": []byte("deployer:s3cret-pw\n")})
	if err != nil || rev != head || len(objs) != 1 || objs[0].GetName() != "private" {
		t.Fatalf("loadSource = %d objects at %s, %v", len(objs), rev, err)
	}
	_, _, err = loadSource(t.Context(), src, t.TempDir(), nil)
	if classify(err) != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(err.Error(), `deploy.source.git.secret: secret "repo" is not in the assignment`) {
		t.Fatalf("missing secret: %v (%v)", err, classify(err))
	}
	_, _, err = loadSource(t.Context(), src, t.TempDir(), map[string][]byte{"repo": []byte("-----BEGIN PRIVATE KEY-----\n")})
	if !errors.Is(err, gitsrc.ErrCredential) || classify(err) != gv1.FailureClass_FAILURE_CLASS_JOB {
		t.Fatalf("SSH key for an HTTP URL: %v", err)
	}
}

const (
	clusterSecret    = "cluster-s3cret-value"
	clusterSecretNew = "cluster-n3w-value"
)

func secretYAML(password string) string {
	return "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: " + password + "}\n"
}

// holdsSecret reports whether b holds a secret value of this test, in
// clear or base64.
func holdsSecret(b []byte) bool {
	for _, v := range []string{clusterSecret, clusterSecretNew} {
		if bytes.Contains(b, []byte(v)) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(v)))) {
			return true
		}
	}
	return false
}

// TestSecretValuesStayInTheSecret deploys a Secret and checks its value is
// in the live Secret and nowhere else Gantry writes: not in the inventory,
// not in drift reports (which say which key differs), not in the log; and
// that a rollback leaves the live Secret as it is.
func TestSecretValuesStayInTheSecret(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	spec := inlineSpec("demo", ns, secretYAML(clusterSecret)+"---\n"+webYAML("", 1, "registry.invalid/web:1", ""))
	sink := &lines{t: t}
	res := c.Deploy(t.Context(), DeployRequest{Spec: spec, Fence: 1, WorkDir: t.TempDir()}, sink)
	mustSucceed(t, c, ns, res)
	live, err := c.core.CoreV1().Secrets(ns).Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil || string(live.Data["password"]) != clusterSecret {
		t.Fatalf("live Secret: %v %v", live.Data, err)
	}
	checkInventory := func() {
		t.Helper()
		cm, err := c.core.CoreV1().ConfigMaps(ns).Get(t.Context(), inventoryName("demo"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(cm.Data)
		if holdsSecret(js) {
			t.Errorf("inventory data holds a Secret value: %s", js)
		}
		for k, gz := range cm.BinaryData {
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(zr)
			if holdsSecret(raw) {
				t.Errorf("inventory %s holds a Secret value", k)
			}
		}
	}
	checkInventory()

	ctx, cancel := context.WithCancel(t.Context())
	reports := make(chan *gv1.DriftReport, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, "demo", ns, func(r *gv1.DriftReport) { reports <- r })
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func(what string, ok func(*gv1.DriftReport) bool) *gv1.DriftReport {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case r := <-reports:
				if js, _ := json.Marshal(r); holdsSecret(js) || bytes.Contains(js, []byte(hashPrefix)) {
					t.Errorf("drift report holds a Secret value or hash: %s", js)
				}
				if ok(r) {
					return r
				}
			case <-timeout:
				t.Fatalf("no report %s", what)
			}
		}
	}
	next("synced", func(r *gv1.DriftReport) bool { return r.Sync == gv1.SyncStatus_SYNC_STATUS_SYNCED })
	patch := []byte(`{"data":{"password":"` + base64.StdEncoding.EncodeToString([]byte(clusterSecretNew)) + `"}}`)
	if _, err := c.core.CoreV1().Secrets(ns).Patch(t.Context(), "db", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r := next("out of sync", func(r *gv1.DriftReport) bool { return r.Sync == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC })
	if len(r.Items) != 1 || r.Items[0].Field != "data.password" || r.Items[0].Object != "v1 Secret "+ns+"/db" {
		t.Fatalf("items = %v", r.Items)
	}
	cancel()
	<-done

	// A deploy changing the Secret whose rollout fails rolls back the
	// Deployment and leaves the Secret as the failed deploy applied it.
	spec = inlineSpec("demo", ns, secretYAML(clusterSecretNew)+"---\n"+
		webYAML("", 1, "registry.invalid/web:2", "\n      nodeSelector: {gantry.dev/no-such-node: \"true\"}"))
	spec.HealthTimeout = durationpb.New(3 * time.Second)
	res = c.Deploy(t.Context(), DeployRequest{Spec: spec, Fence: 2, WorkDir: t.TempDir()}, sink)
	if res.Outputs[OutputResult] != ResultRolledBack {
		t.Fatalf("deploy: %v %v %v, want a rollback", res.Class, res.Err, res.Outputs)
	}
	if !strings.Contains(sink.String(), "left 1 Secrets as they are") {
		t.Errorf("the log does not say the Secret was left as it is")
	}
	live, err = c.core.CoreV1().Secrets(ns).Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil || string(live.Data["password"]) != clusterSecretNew {
		t.Fatalf("live Secret after rollback: %v %v", live.Data, err)
	}
	dep, err := c.core.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil || dep.Spec.Template.Spec.Containers[0].Image != "registry.invalid/web:1" {
		t.Fatalf("deployment after rollback: %v", err)
	}
	checkInventory()
	if holdsSecret([]byte(sink.String())) {
		t.Error("the deploy log holds a Secret value")
	}
}
