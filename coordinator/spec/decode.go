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

// Aliases let a small document name the same large value many times;
// without a bound a few kilobytes could expand into gigabytes of JobSpec.
// The decoder therefore counts what it visits, through aliases every time:
// the values (maxNodes) and the bytes of the scalars (MaxExpanded). And it
// stops after maxDecodeErrors problems, which a document repeating one
// mistake through aliases could otherwise multiply.
const (
	maxNodes        = 1 << 18
	maxDecodeErrors = 10 * maxErrors
)

// decoder turns a YAML node tree into a JobSpec. It records problems rather
// than stopping at the first, and remembers the line of every field path it
// sees so that problems found later by validation can name their line.
type decoder struct {
	errs  errs
	lines map[string]int
	// containers are the lists and mappings of values whose items' lines
	// are not recorded in lines, by path: line finds them on demand, so
	// that a long list costs no map entry per item.
	containers map[string]*yaml.Node
	// yamlField maps the path of a JobSpec field to the YAML field it was
	// decoded from, where the two differ (a secret in env lands in
	// secret_env).
	yamlField map[string]string
	nodes     int
	bytes     int
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
		if l, ok := d.itemLine(field); ok {
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

// itemLine returns the line of an item of one of the containers: field is
// PATH[N] for a list or PATH["KEY"] for a mapping.
func (d *decoder) itemLine(field string) (int, bool) {
	if !strings.HasSuffix(field, "]") {
		return 0, false
	}
	if i := strings.LastIndexByte(field, '['); i >= 0 {
		if c, ok := d.containers[field[:i]]; ok && c.Kind == yaml.SequenceNode {
			if n, err := strconv.Atoi(field[i+1 : len(field)-1]); err == nil && n >= 0 && n < len(c.Content) {
				return c.Content[n].Line, true
			}
		}
	}
	// A quoted key may itself contain `["`: try each start from the end.
	for end := len(field); ; {
		i := strings.LastIndex(field[:end], `["`)
		if i < 0 {
			return 0, false
		}
		end = i
		c, ok := d.containers[field[:i]]
		if !ok || c.Kind != yaml.MappingNode {
			continue
		}
		key, err := strconv.Unquote(field[i+1 : len(field)-1])
		if err != nil {
			continue
		}
		for j := 0; j+1 < len(c.Content); j += 2 {
			if k := deref(c.Content[j]); k.Kind == yaml.ScalarNode && k.Value == key {
				return c.Content[j].Line, true
			}
		}
		return 0, false
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
		"labels":      func(p string, v *yaml.Node) { t.Labels = d.strMap(v, p, MaxLabels, "labels") },
		"retries":     func(p string, v *yaml.Node) { t.Retries = d.int32(v, p, 0, MaxRetries) },
		"timeout":     func(p string, v *yaml.Node) { t.Timeout = d.duration(v, p) },
		"concurrency": func(p string, v *yaml.Node) { t.Concurrency = d.str(v, p) },
		"when": func(p string, v *yaml.Node) {
			w := &gv1.When{}
			d.fields(v, p, map[string]func(string, *yaml.Node){
				"branches": func(p string, v *yaml.Node) { w.Branches = d.strs(v, p, "") },
				"events":   func(p string, v *yaml.Node) { w.Events = d.strs(v, p, "") },
			})
			t.When = w
		},
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
	}, field, 0, "")
}

// pairs walks the entries of a mapping (null counts as empty). Keys must be
// scalars and appear once. With max 0, it records the line of each key
// under the path keyPath makes of it; otherwise the mapping may have at
// most max entries (of what), and it is recorded as a container.
func (d *decoder) pairs(n *yaml.Node, path string, fn func(key string, v *yaml.Node), keyPath func(path, key string) string, max int, what string) {
	n = d.resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errs.add(path, "must be a mapping, got %s", describe(n))
		return
	}
	if max > 0 {
		if k := len(n.Content) / 2; k > max {
			d.errs.add(path, "at most %d %s are allowed, got %d", max, what, k)
			return
		}
		d.containers[path] = n
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
		if first, ok := seen[k.Value]; ok {
			d.errs.addLine(k.Line, keyPath(path, k.Value), "repeated key; first set at line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		if max == 0 {
			d.lines[keyPath(path, k.Value)] = k.Line
		}
		fn(k.Value, n.Content[i+1])
	}
}

// resolve follows aliases and counts the node against maxNodes, and its
// bytes, when it is a scalar, against MaxExpanded. It stops decoding past
// those bounds or maxDecodeErrors problems.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	n = deref(n)
	d.nodes++
	if n.Kind == yaml.ScalarNode {
		d.bytes += len(n.Value)
	}
	switch {
	case d.nodes > maxNodes:
		d.errs.add("", "document too large: the pipeline expands to more than %d values (YAML aliases count every time they are used)", maxNodes)
		panic(abort{})
	case d.bytes > MaxExpanded:
		d.errs.add("", "document too large: the pipeline expands to more than %s (YAML aliases count every time they are used)", size(MaxExpanded))
		panic(abort{})
	case len(d.errs) >= maxDecodeErrors:
		panic(abort{})
	}
	return n
}

// deref follows aliases without counting.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// str decodes a string. Any scalar will do, so that `command: [sleep, 5]`
// and `env: {PORT: 8080}` mean what they say; null is the empty string.
func (d *decoder) str(n *yaml.Node, path string) string {
	return d.strAt(n, func() string { return path })
}

// strAt is str with the path made only for an error: lists and mappings
// of strings may be long.
func (d *decoder) strAt(n *yaml.Node, path func() string) string {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode {
		d.errs.add(path(), "must be a string, got %s", describe(n))
		return ""
	}
	if isNull(n) {
		return ""
	}
	return n.Value
}

// strs decodes a list of strings; hint, when set, follows the type error.
// Validation bounds its length: the values of a long list count against
// the budgets of resolve.
func (d *decoder) strs(n *yaml.Node, path, hint string) []string {
	n = d.resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errs.add(path, "must be a list of strings, got %s%s", describe(n), hint)
		return nil
	}
	d.containers[path] = n
	out := make([]string, len(n.Content))
	for i, item := range n.Content {
		out[i] = d.strAt(item, func() string { return index(path, i) })
	}
	return out
}

// strMap decodes a mapping of at most max strings (of what) to strings.
func (d *decoder) strMap(n *yaml.Node, path string, max int, what string) map[string]string {
	var out map[string]string
	d.pairs(n, path, func(key string, v *yaml.Node) {
		if out == nil {
			out = map[string]string{}
		}
		out[key] = d.strAt(v, func() string { return mapKey(path, key) })
	}, mapKey, max, what)
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
		d.errs.add(path, "invalid integer %q", clip(n.Value))
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
		d.errs.add(path, "invalid duration %q", clip(n.Value))
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
