package autoscale

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func deployment(annos map[string]string, args ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "gpu", Annotations: annos}}
	d.Spec.Template.Spec.Containers = []corev1.Container{
		{Name: "sidecar", Args: []string{"serve"}},
		{Name: "agent", Args: append([]string{"agent"}, args...)},
	}
	return d
}

func TestPoolOf(t *testing.T) {
	t.Parallel()
	p, err := PoolOf(deployment(map[string]string{AnnoMin: "1", AnnoMax: "6", AnnoScaleDownAfter: "30s"},
		"--name=$(POD_NAME)", "--label=pool=gpu", "--label", "os=linux", "--slots=2"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Min != 1 || p.Max != 6 || p.Slots != 2 || p.ScaleDownAfter != 30*time.Second ||
		len(p.Labels) != 2 || p.Labels["pool"] != "gpu" || p.Labels["os"] != "linux" {
		t.Errorf("pool %+v", p)
	}
	if !p.Serves("") || !p.Serves("pool=gpu") || !p.Serves("os=linux,pool=gpu") || p.Serves("pool=cpu") || p.Serves("arch=arm64,pool=gpu") {
		t.Error("Serves disagrees with the pool's labels")
	}
	p, err = PoolOf(deployment(map[string]string{AnnoLabels: "pool=big", AnnoSlots: "8"}, "--label=pool=gpu"))
	if err != nil || p.Labels["pool"] != "big" || p.Slots != 8 || p.Max != 10 || p.ScaleDownAfter != defaultScaleDownAfter {
		t.Errorf("annotations override the arguments: %+v %v", p, err)
	}

	for _, c := range []struct {
		d    *appsv1.Deployment
		want string
	}{
		{deployment(map[string]string{AnnoMax: "many"}), "gantry.dev/max-replicas"},
		{deployment(map[string]string{AnnoMin: "3", AnnoMax: "2"}), "below gantry.dev/min-replicas"},
		{deployment(map[string]string{AnnoScaleDownAfter: "soon"}), "gantry.dev/scale-down-after"},
		{deployment(map[string]string{AnnoLabels: "novalue"}), "gantry.dev/labels"},
		{deployment(nil, "--slots=x"), "--slots"},
		{deployment(nil, "--label"), "without a value"},
		{&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, "no container runs `gantry agent`"},
	} {
		if _, err := PoolOf(c.d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want it to name %q", err, c.want)
		}
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	p := Pool{Name: "gpu", Min: 1, Max: 5, ScaleDownAfter: time.Minute}
	now := time.Now()
	idle := func(names ...string) []Member {
		var ms []Member
		for _, n := range names {
			ms = append(ms, Member{Pod: n, Agent: true})
		}
		return ms
	}

	// Up at once, to the demand, capped at Max.
	if d := Decide(p, 40, 1, idle("a"), 4, time.Time{}, now); d.Replicas != 5 || d.Want != 5 || d.Demand != 40 {
		t.Errorf("40 queued: %+v", d)
	}
	if d := Decide(p, 7, 1, idle("a"), 4, time.Time{}, now); d.Replicas != 2 {
		t.Errorf("7 queued on 4 slots: %+v", d)
	}
	// Never below Min, even with nothing to do.
	if d := Decide(p, 0, 0, nil, 4, time.Time{}, now); d.Replicas != 1 {
		t.Errorf("empty pool below min: %+v", d)
	}

	// Down only after ScaleDownAfter of needing fewer.
	ms := []Member{{Pod: "a", Agent: true, Running: 3}, {Pod: "b", Agent: true}, {Pod: "c", Agent: true}, {Pod: "d"}}
	if d := Decide(p, 0, 4, ms, 4, time.Time{}, now); d.Replicas != 4 || d.Want != 1 {
		t.Errorf("first pass over demand scaled: %+v", d)
	}
	if d := Decide(p, 0, 4, ms, 4, now.Add(-30*time.Second), now); d.Replicas != 4 {
		t.Errorf("scaled within the cool-down: %+v", d)
	}
	d := Decide(p, 0, 4, ms, 4, now.Add(-time.Minute), now)
	if d.Replicas != 1 || !slices.Equal(d.Remove, []string{"d", "b", "c"}) {
		t.Errorf("after the cool-down: %+v; want 1 replica, removing the never-connected d first, then b, c", d)
	}

	// Busy agents are never removed: four busy, demand needs two.
	busy := []Member{{Pod: "a", Agent: true, Running: 1}, {Pod: "b", Agent: true, Running: 1}, {Pod: "c", Agent: true, Running: 1}, {Pod: "d", Agent: true}}
	d = Decide(Pool{Min: 0, Max: 5, ScaleDownAfter: time.Minute}, 0, 4, busy, 2, now.Add(-time.Hour), now)
	if d.Replicas != 3 || !slices.Equal(d.Remove, []string{"d"}) {
		t.Errorf("3 running on 2 slots with 4 agents: %+v; want 3 replicas, removing d only", d)
	}
	allBusy := busy[:3]
	if d := Decide(Pool{Max: 5, ScaleDownAfter: time.Minute}, 0, 3, allBusy, 1, now.Add(-time.Hour), now); d.Replicas != 3 {
		t.Errorf("every agent busy: %+v", d)
	}
}
