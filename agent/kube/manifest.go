package kube

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// kustomizationFiles are the names kustomize recognizes.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// loadSource returns the objects of src and, for a Git source, the commit
// they come from. A Git repository is checked out into workDir, with the
// credential its secret names, taken from secrets.
func loadSource(ctx context.Context, src *gv1.ManifestSource, workDir string, secrets map[string][]byte) ([]*unstructured.Unstructured, string, error) {
	switch {
	case src == nil:
		return nil, "", content(errors.New("deploy has no manifest source"))
	case src.GetGit() != nil:
		g := src.GetGit()
		var cred []byte
		if name := g.GetSecret(); name != "" {
			v, ok := secrets[name]
			if !ok {
				return nil, "", content(fmt.Errorf("deploy.source.git.secret: secret %q is not in the assignment", name))
			}
			cred = v
		}
		dir := filepath.Join(workDir, "manifests")
		rev, err := gitsrc.Clone(ctx, g.GetUrl(), g.GetRevision(), dir, cred)
		if errors.Is(err, gitsrc.ErrCredential) {
			return nil, "", content(err)
		}
		if err != nil {
			return nil, "", err
		}
		root, err := subdir(dir, src.GetPath())
		if err != nil {
			return nil, "", err
		}
		objs, err := loadDir(root, dir)
		return objs, rev, err
	case src.GetDir() != "":
		root, err := subdir(src.GetDir(), src.GetPath())
		if err != nil {
			return nil, "", err
		}
		objs, err := loadDir(root, src.GetDir())
		return objs, "", err
	case src.GetInline() != "":
		objs, err := parseDocuments("inline manifests", []byte(src.GetInline()))
		return objs, "", err
	}
	return nil, "", content(errors.New("manifest source names no git repository, directory or inline manifests"))
}

// subdir joins a path from a pipeline to its root, refusing paths that leave it.
func subdir(root, path string) (string, error) {
	if path == "" || path == "." {
		return root, nil
	}
	clean := filepath.Clean(strings.TrimPrefix(path, "/"))
	if !filepath.IsLocal(clean) {
		return "", content(fmt.Errorf("manifest path %q leaves the source directory", path))
	}
	return filepath.Join(root, clean), nil
}

// loadDir reads the manifests of dir: kustomize output when dir holds a
// kustomization, otherwise every *.yaml, *.yml and *.json file in dir (not
// recursively) in name order. Files are named relative to base in errors.
func loadDir(dir, base string) ([]*unstructured.Unstructured, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, content(fmt.Errorf("manifest directory: %w", err))
	}
	if !st.IsDir() {
		return nil, content(fmt.Errorf("manifest path %s is not a directory", rel(base, dir)))
	}
	for _, k := range kustomizationFiles {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			return kustomize(dir, base)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, content(fmt.Errorf("read manifest directory %s: %w", rel(base, dir), err))
	}
	var names []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	var objs []*unstructured.Unstructured
	for _, n := range names {
		p := filepath.Join(dir, n)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, content(fmt.Errorf("read manifest %s: %w", rel(base, p), err))
		}
		o, err := parseDocuments(rel(base, p), data)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	if len(objs) == 0 {
		return nil, content(fmt.Errorf("no manifests in %s", rel(base, dir)))
	}
	return objs, nil
}

func kustomize(dir, base string) ([]*unstructured.Unstructured, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, content(fmt.Errorf("kustomize build %s: %w", rel(base, dir), err))
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, content(fmt.Errorf("kustomize build %s: %w", rel(base, dir), err))
	}
	return parseDocuments("kustomize build "+rel(base, dir), out)
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return r
	}
	return p
}

// parseDocuments splits YAML (or JSON) into documents and decodes each into
// objects; empty documents are skipped and a List is expanded. name and the
// 1-based document number identify a malformed document in the error.
func parseDocuments(name string, data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, content(fmt.Errorf("%s: document %d: %w", name, n, err))
		}
		o, err := decodeDocument(doc)
		if err != nil {
			return nil, content(fmt.Errorf("%s: document %d: %w", name, n, err))
		}
		objs = append(objs, o...)
	}
}

func decodeDocument(doc []byte) ([]*unstructured.Unstructured, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, nil
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	js = bytes.TrimSpace(js)
	if string(js) == "null" || len(js) == 0 {
		return nil, nil // only comments
	}
	if js[0] != '{' {
		return nil, errors.New("not a Kubernetes object (expected a mapping)")
	}
	obj, _, err := unstructured.UnstructuredJSONScheme.Decode(js, nil, nil)
	if err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		if err := validateObject(o); err != nil {
			return nil, err
		}
		return []*unstructured.Unstructured{o}, nil
	case *unstructured.UnstructuredList:
		var objs []*unstructured.Unstructured
		for i := range o.Items {
			it := &o.Items[i]
			if err := validateObject(it); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			objs = append(objs, it)
		}
		return objs, nil
	}
	return nil, fmt.Errorf("unexpected object %T", obj)
}

func validateObject(o *unstructured.Unstructured) error {
	switch {
	case o.GetAPIVersion() == "":
		return errors.New("apiVersion is missing")
	case o.GetKind() == "":
		return errors.New("kind is missing")
	case o.GetName() == "":
		return fmt.Errorf("%s %s has no metadata.name", o.GetAPIVersion(), o.GetKind())
	}
	return nil
}

// encodeList renders objects as one JSON v1 List, the format of the
// inventory's manifests.
func encodeList(objs []*unstructured.Unstructured) ([]byte, error) {
	items := make([]any, len(objs))
	for i, o := range objs {
		items[i] = o.Object
	}
	list := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "List", "items": items}}
	return list.MarshalJSON()
}

// decodeList reads what encodeList wrote.
func decodeList(data []byte) ([]*unstructured.Unstructured, error) {
	obj, _, err := unstructured.UnstructuredJSONScheme.Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	list, ok := obj.(*unstructured.UnstructuredList)
	if !ok {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			return []*unstructured.Unstructured{u}, nil
		}
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	out := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}
