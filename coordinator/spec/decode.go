package spec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// maxNodes bounds the YAML nodes the decoder visits. Aliases let a small
// document name the same large list many times; without a bound a few
// kilobytes could expand into gigabytes of JobSpec.
const maxNodes = 1 << 20

// decoder turns a YAML node tree into a JobSpec. It records problems rather
// than stopping at the first, and remembers the line of every field path it
// sees so that problems found later by validation can name their line.
type decoder struct {
	errs  errs
	lines map[string]int
	nodes int
}

// abort stops decoding when the document is too large to finish.
type abort struct{}

func (d *decoder) decode(root *yaml.Node) (s *gv1.JobSpec) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(abort); !ok {
				panic(r)
			}
		}
	}()
	root = d.resolve(root)
	d.lines[""] = root.Line
	if root.Kind != yaml.MappingNode {
		d.errs.add("", "a pipeline must be a mapping of name, priority and tasks, got %s", describe(root))
		return nil
	}
	return d.job(root)
}

// line is the line of field or, when it was never seen (a required field
// that is missing), of its closest enclosing field.
func (d *decoder) line(field string) int {
	for {
		if l, ok := d.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			if field == "" {
				return 0
			}
			i = 0
		}
		field = field[:i]
	}
}

func (d *decoder) job(n *yaml.Node) *gv1.JobSpec {
	s := &gv1.JobSpec{}
	d.fields(n, "", map[string]func(string, *yaml.Node){
		"name":     func(p string, v *yaml.Node) { s.Name = d.str(v, p) },
		"priority": func(p string, v *yaml.Node) { s.Priority = d.int32(v, p, MinPriority, MaxPriority) },
		"tasks":    func(p string, v *yaml.Node) { s.Tasks = d.tasks(v, p) },
	})
	return s
}

func (d *decoder) tasks(n *yaml.Node, path string) []*gv1.TaskSpec {
	n = d.resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errs.add(path, "must be a list of tasks, got %s", describe(n))
		return nil
	}
	if len(n.Content) > MaxTasks {
		d.errs.add(path, "at most %d tasks are allowed, got %d", MaxTasks, len(n.Content))
		return nil
	}
	tasks := make([]*gv1.TaskSpec, len(n.Content))
	for i, item := range n.Content {
		p := index(path, i)
		d.lines[p] = item.Line
		tasks[i] = d.task(item, p)
	}
	return tasks
}

func (d *decoder) task(n *yaml.Node, path string) *gv1.TaskSpec {
	t := &gv1.TaskSpec{}
	fields := map[string]func(string, *yaml.Node){
		"name":        func(p string, v *yaml.Node) { t.Name = d.str(v, p) },
		"needs":       func(p string, v *yaml.Node) { t.Needs = d.strs(v, p, "") },
		"labels":      func(p string, v *yaml.Node) { t.Labels = d.strMap(v, p) },
		"retries":     func(p string, v *yaml.Node) { t.Retries = d.int32(v, p, 0, MaxRetries) },
		"timeout":     func(p string, v *yaml.Node) { t.Timeout = d.duration(v, p) },
		"concurrency": func(p string, v *yaml.Node) { t.Concurrency = d.str(v, p) },
	}
	var chosen string // key of the executor already decoded
	for _, ex := range executors {
		fields[ex.key] = func(p string, v *yaml.Node) {
			if chosen != "" {
				d.errs.add(p, "only one executor per task; %s is already set", chosen)
				return
			}
			chosen = ex.key
			ex.decode(d, v, p, t)
		}
	}
	d.fields(n, path, fields)
	return t
}

// fields decodes a mapping whose keys are field names, calling the function
// of each key present. Unknown and repeated keys are errors.
func (d *decoder) fields(n *yaml.Node, path string, fields map[string]func(path string, v *yaml.Node)) {
	d.pairs(n, path, func(key string, v *yaml.Node) {
		p := field(path, key)
		if f, ok := fields[key]; ok {
			f(p, v)
			return
		}
		known := make([]string, 0, len(fields))
		for k := range fields {
			known = append(known, k)
		}
		slices.Sort(known)
		d.errs.add(p, "unknown field; known fields are %s", strings.Join(known, ", "))
	}, field)
}

// pairs walks the entries of a mapping (null counts as empty), recording the
// line of each key under the path keyPath makes of it. Keys must be scalars
// and appear once.
func (d *decoder) pairs(n *yaml.Node, path string, fn func(key string, v *yaml.Node), keyPath func(path, key string) string) {
	n = d.resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errs.add(path, "must be a mapping, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			d.errs.addLine(k.Line, path, "keys must be strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errs.addLine(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		p := keyPath(path, k.Value)
		if first, ok := seen[k.Value]; ok {
			d.errs.addLine(k.Line, p, "repeated key; first set at line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[p] = k.Line
		fn(k.Value, n.Content[i+1])
	}
}

// resolve follows aliases and counts the node against maxNodes.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	d.nodes++
	if d.nodes > maxNodes {
		d.errs.add("", "document too large: more than %d values after expanding aliases", maxNodes)
		panic(abort{})
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// str decodes a string. Any scalar will do, so that `command: [sleep, 5]`
// and `env: {PORT: 8080}` mean what they say; null is the empty string.
func (d *decoder) str(n *yaml.Node, path string) string {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode {
		d.errs.add(path, "must be a string, got %s", describe(n))
		return ""
	}
	if isNull(n) {
		return ""
	}
	return n.Value
}

// strs decodes a list of strings; hint, when set, follows the type error.
func (d *decoder) strs(n *yaml.Node, path, hint string) []string {
	n = d.resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errs.add(path, "must be a list of strings, got %s%s", describe(n), hint)
		return nil
	}
	out := make([]string, len(n.Content))
	for i, item := range n.Content {
		p := index(path, i)
		d.lines[p] = item.Line
		out[i] = d.str(item, p)
	}
	return out
}

// strMap decodes a mapping of strings to strings.
func (d *decoder) strMap(n *yaml.Node, path string) map[string]string {
	var out map[string]string
	d.pairs(n, path, func(key string, v *yaml.Node) {
		if out == nil {
			out = map[string]string{}
		}
		out[key] = d.str(v, mapKey(path, key))
	}, mapKey)
	return out
}

// int32 decodes an integer; null is zero. lo and hi are the valid range,
// named when the value does not even fit an int32.
func (d *decoder) int32(n *yaml.Node, path string, lo, hi int32) int32 {
	n = d.resolve(n)
	if isNull(n) {
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errs.add(path, "must be an integer, got %s", describe(n))
		return 0
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.errs.add(path, "invalid integer %q", n.Value)
		return 0
	}
	if v != int64(int32(v)) {
		// Validation checks the range of what fits.
		d.errs.add(path, "must be between %d and %d, got %d", lo, hi, v)
		return 0
	}
	return int32(v)
}

// duration decodes a Go duration string such as "1m30s"; null is unset.
func (d *decoder) duration(n *yaml.Node, path string) *durationpb.Duration {
	n = d.resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		d.errs.add(path, "must be a duration such as 30s or 5m, got %s", describe(n))
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errs.add(path, "invalid duration %q", n.Value)
		return nil
	}
	return durationpb.New(v)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the type of a node for error messages, with the value of
// short scalars.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
	default:
		return "nothing"
	}
	kind := map[string]string{
		"!!str": "string", "!!int": "integer", "!!float": "number",
		"!!bool": "boolean", "!!timestamp": "timestamp", "!!binary": "binary",
	}[n.ShortTag()]
	switch {
	case n.ShortTag() == "!!null":
		return "null"
	case kind == "":
		kind = "value tagged " + n.ShortTag()
	}
	if len(n.Value) > 40 {
		return kind
	}
	return kind + " " + strconv.Quote(n.Value)
}

func field(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func mapKey(path, key string) string { return path + "[" + strconv.Quote(key) + "]" }

// boolean decodes true or false; null is false.
func (d *decoder) boolean(n *yaml.Node, path string) bool {
	n = d.resolve(n)
	if isNull(n) {
		return false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.errs.add(path, "must be true or false, got %s", describe(n))
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}
