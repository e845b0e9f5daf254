package kube

import (
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// podSpecPath is where the pod spec of a workload kind lives.
func podSpecPath(group, kind string) []string {
	switch {
	case group == "" && kind == "Pod":
		return []string{"spec"}
	case group == "apps" && (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet"),
		group == "batch" && kind == "Job":
		return []string{"spec", "template", "spec"}
	case group == "batch" && kind == "CronJob":
		return []string{"spec", "jobTemplate", "spec", "template", "spec"}
	}
	return nil
}

// imageRepository is ref without its tag and digest: "registry:5000/app:1"
// and "registry:5000/app@sha256:..." are both "registry:5000/app".
func imageRepository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if i := strings.LastIndexByte(ref, ':'); i > slash {
		ref = ref[:i]
	}
	return ref
}

// containerLists are the container lists of a pod spec.
var containerLists = []string{"initContainers", "containers"}

// forEachContainer calls fn with every container of o's pod template (none
// when o is not a workload). Malformed entries are skipped: the API server
// rejects them when the object is applied, naming the field.
func forEachContainer(o *unstructured.Unstructured, fn func(c map[string]any)) {
	path := podSpecPath(o.GroupVersionKind().Group, o.GetKind())
	if path == nil {
		return
	}
	spec, ok := nestedMap(o.Object, path...)
	if !ok {
		return
	}
	for _, list := range containerLists {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok {
				fn(m)
			}
		}
	}
}

// substituteImages replaces the image of every container whose repository
// is a key of images by the key's reference.
func substituteImages(objs []*unstructured.Unstructured, images map[string]string) {
	if len(images) == 0 {
		return
	}
	for _, o := range objs {
		forEachContainer(o, func(c map[string]any) {
			img, _ := c["image"].(string)
			if ref, ok := images[imageRepository(img)]; ok && img != "" {
				c["image"] = ref
			}
		})
	}
}

// deployedImages maps the repository of every container image of the
// workloads to its reference.
func deployedImages(objs []*unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, o := range objs {
		forEachContainer(o, func(c map[string]any) {
			if img, _ := c["image"].(string); img != "" {
				out[imageRepository(img)] = img
			}
		})
	}
	return out
}

// nestedMap follows path through maps of obj.
func nestedMap(obj map[string]any, path ...string) (map[string]any, bool) {
	cur := obj
	for _, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}
