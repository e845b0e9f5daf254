package promote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// containerLists are the keys whose sequences hold containers, wherever
// they are in a manifest: a Pod's spec, a Deployment's template, a
// CronJob's job template.
var containerLists = map[string]bool{"containers": true, "initContainers": true, "ephemeralContainers": true}

// Set returns content, the file at name (a slash-separated path, used in
// messages and to tell a kustomization from manifests), with every
// reference to the repository image set to ref, and a description of each
// reference it changed, such as
//
//	apps/web/deployment.yaml: containers[web] registry.example/web:1 -> registry.example/web@sha256:...
//
// image is a repository as written in the file, without tag or digest:
// "registry.example:5000/web" matches "registry.example:5000/web:1" and
// "registry.example:5000/web@sha256:...", and "web" does not match
// "docker.io/library/web". ref is a repository with a tag, a digest or
// both.
//
// In manifests (one or more YAML documents) the images set are those of
// the items of every containers, initContainers and ephemeralContainers
// sequence. In a kustomization (base name kustomization.yaml,
// kustomization.yml or Kustomization) they are the entries of the
// top-level images list with that name: a digest ref sets digest and drops
// newTag, a tag ref sets newTag and drops digest, and newName is set only
// when ref's repository is not the name.
//
// When only values change (a kustomization's newTag renamed to digest
// counts), they are changed in place and the rest of the file stays byte
// for byte; a new value that would not read back as a string (newTag 1.0)
// is double-quoted. When keys are added or removed, or a value is written
// in a way not changed in place (a block scalar, one spanning lines), the
// documents are encoded again from their parsed form: data, comments and
// the order of keys stay, but indentation becomes two spaces, sequences
// are indented under their key, and quoting and blank lines may change.
//
// A file with no reference to image is an error wrapping ErrNoImage; one
// whose references are all ref already is returned as it is, with no
// descriptions. A file that does not parse is an error naming it and the
// line.
func Set(name string, content []byte, image, ref string) ([]byte, []string, error) {
	if err := checkImage(image); err != nil {
		return nil, nil, err
	}
	r, err := parseRef(ref)
	if err != nil {
		return nil, nil, err
	}
	docs, err := parse(name, content)
	if err != nil {
		return nil, nil, err
	}
	f := &file{name: name}
	where := "in containers, initContainers or ephemeralContainers"
	if isKustomization(name) {
		where = "in images"
		for _, d := range docs {
			f.setKustomization(d, image, r)
		}
	} else {
		for _, d := range docs {
			f.setContainers(d, image, ref)
		}
	}
	switch {
	case f.matched == 0:
		return nil, nil, fmt.Errorf("%s: %w %s (%s)", name, ErrNoImage, image, where)
	case len(f.replaced) == 0:
		return content, nil, nil
	}
	if !f.reshaped {
		if out, ok := splice(content, f.edits); ok && sameDocs(out, docs) {
			return out, f.replaced, nil
		}
	}
	out, err := encode(docs)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", name, err)
	}
	return out, f.replaced, nil
}

// isKustomization reports whether the file at name is one kustomize reads.
func isKustomization(name string) bool {
	switch path.Base(name) {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

// file collects what Set does to the documents of one file.
type file struct {
	name     string
	matched  int      // references to the image found
	replaced []string // descriptions of the references changed
	edits    []edit   // scalars changed
	reshaped bool     // keys were added or removed
}

// edit is a change of one scalar's value, with where the scalar was.
type edit struct {
	line, col int // 1-based; col counts characters
	style     yaml.Style
	old, new  string
}

// setScalar sets the value of the scalar n and reports whether it changed.
func (f *file) setScalar(n *yaml.Node, value string) bool {
	if n.Value == value {
		return false
	}
	f.edits = append(f.edits, edit{line: n.Line, col: n.Column, style: n.Style, old: n.Value, new: value})
	n.Value, n.Tag = value, "!!str"
	return true
}

// setContainers sets the image of the containers in the tree of n.
func (f *file) setContainers(n *yaml.Node, image, ref string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			f.setContainers(c, image, ref)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if containerLists[k.Value] && v.Kind == yaml.SequenceNode {
				for j, c := range v.Content {
					f.setContainer(k.Value, j, resolve(c), image, ref)
				}
			}
			f.setContainers(v, image, ref)
		}
	}
}

// setContainer sets the image of the container c, item i of list.
func (f *file) setContainer(list string, i int, c *yaml.Node, image, ref string) {
	if c.Kind != yaml.MappingNode {
		return
	}
	_, img := lookup(c, "image")
	if img == nil || img.Kind != yaml.ScalarNode || repository(img.Value) != image {
		return
	}
	f.matched++
	name := strconv.Itoa(i)
	if _, n := lookup(c, "name"); n != nil && n.Kind == yaml.ScalarNode && n.Value != "" {
		name = n.Value
	}
	old := img.Value
	if f.setScalar(img, ref) {
		f.replaced = append(f.replaced, fmt.Sprintf("%s: %s[%s] %s -> %s", f.name, list, name, old, ref))
	}
}

// setKustomization sets the entries for image of the top-level images
// list of the kustomization doc.
func (f *file) setKustomization(doc *yaml.Node, image string, ref reference) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return
	}
	_, images := lookup(doc.Content[0], "images")
	if images == nil || images.Kind != yaml.SequenceNode {
		return
	}
	for _, e := range images.Content {
		e = resolve(e)
		if e.Kind != yaml.MappingNode {
			continue
		}
		if _, n := lookup(e, "name"); n == nil || n.Kind != yaml.ScalarNode || n.Value != image {
			continue
		}
		f.matched++
		old := kustomizeRef(e, image)
		changed := false
		if ref.repo != image {
			changed = f.put(e, "newName", ref.repo)
		} else {
			changed = f.remove(e, "newName")
		}
		if ref.digest != "" {
			changed = f.putInstead(e, "digest", "newTag", ref.digest) || changed
		} else {
			changed = f.putInstead(e, "newTag", "digest", ref.tag) || changed
		}
		if changed {
			f.replaced = append(f.replaced, fmt.Sprintf("%s: images[%s] %s -> %s", f.name, image, old, ref))
		}
	}
}

// kustomizeRef is the reference the images entry e for name makes.
func kustomizeRef(e *yaml.Node, name string) string {
	r := reference{repo: name}
	for key, field := range map[string]*string{"newName": &r.repo, "newTag": &r.tag, "digest": &r.digest} {
		if _, v := lookup(e, key); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
			*field = v.Value
		}
	}
	return r.String()
}

// put sets key to value in the mapping m and reports whether that
// changed m.
func (f *file) put(m *yaml.Node, key, value string) bool {
	i, v := lookup(m, key)
	switch {
	case v == nil:
		m.Content = append(m.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
		f.reshaped = true
		return true
	case v.Kind != yaml.ScalarNode:
		m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
		f.reshaped = true
		return true
	}
	return f.setScalar(v, value)
}

// putInstead sets key to value in the mapping m and removes other; when m
// has other but not key, other is renamed, which keeps its place.
func (f *file) putInstead(m *yaml.Node, key, other, value string) bool {
	k, _ := lookup(m, key)
	o, ov := lookup(m, other)
	if k < 0 && o >= 0 && ov.Kind == yaml.ScalarNode {
		f.setScalar(m.Content[o], key)
		f.setScalar(ov, value)
		return true
	}
	changed := f.put(m, key, value)
	return f.remove(m, other) || changed
}

// remove removes key from the mapping m and reports whether it was there.
func (f *file) remove(m *yaml.Node, key string) bool {
	i, _ := lookup(m, key)
	if i < 0 {
		return false
	}
	m.Content = append(m.Content[:i], m.Content[i+2:]...)
	f.reshaped = true
	return true
}

// lookup returns the index of key in the mapping m and its value, with
// aliases resolved; -1 and nil when m has no such key.
func lookup(m *yaml.Node, key string) (int, *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return i, resolve(m.Content[i+1])
		}
	}
	return -1, nil
}

// resolve returns the node an alias stands for: setting it sets the
// anchored node, and so every alias of it.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// parse returns the documents of content.
func parse(name string, content []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s, document %d: %w", name, len(docs)+1, err)
		}
		docs = append(docs, &n)
	}
}

// encode writes docs as a YAML stream.
func encode(docs []*yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameDocs reports whether content holds the same data as docs.
func sameDocs(content []byte, docs []*yaml.Node) bool {
	got, err := parse("", content)
	if err != nil || len(got) != len(docs) {
		return false
	}
	for i := range docs {
		var a, b any
		if got[i].Decode(&a) != nil || docs[i].Decode(&b) != nil || !reflect.DeepEqual(a, b) {
			return false
		}
	}
	return true
}
