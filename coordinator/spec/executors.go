package spec

import (
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// executor is one way of running a task: a key of the task in YAML and a
// case of the TaskSpec executor oneof. A task has exactly one. Adding an
// executor means writing its decode and validate functions and listing it
// here; keys not listed are unknown fields.
type executor struct {
	key string
	// decode reads the value of key and sets t's executor.
	decode func(d *decoder, n *yaml.Node, path string, t *gv1.TaskSpec)
	// validate checks t's executor if it is of this kind (path is the
	// task's) and reports whether it was.
	validate func(l *errs, t *gv1.TaskSpec, path string) bool
}

var executors = []executor{
	{key: "exec", decode: decodeExec, validate: validateExec},
	{key: "build", decode: decodeBuild, validate: validateBuild},
	{key: "run", decode: decodeRun, validate: validateRun},
	{key: "deploy", decode: decodeDeploy, validate: validateDeploy},
	{key: "promote", decode: decodePromote, validate: validatePromote},
	{key: "approval", decode: decodeApproval, validate: validateApproval},
}

func decodeExec(d *decoder, n *yaml.Node, path string, t *gv1.TaskSpec) {
	e := &gv1.ExecSpec{}
	d.fields(n, path, map[string]func(string, *yaml.Node){
		"command": func(p string, v *yaml.Node) { e.Command = d.strs(v, p, " (use shell for a script)") },
		"shell":   func(p string, v *yaml.Node) { e.Shell = d.str(v, p) },
		"env":     func(p string, v *yaml.Node) { e.Env, e.SecretEnv = d.env(v, p, path+".secret_env") },
		"dir":     func(p string, v *yaml.Node) { e.Dir = d.str(v, p) },
	})
	t.Executor = &gv1.TaskSpec_Exec{Exec: e}
}

func validateExec(l *errs, t *gv1.TaskSpec, path string) bool {
	x, ok := t.Executor.(*gv1.TaskSpec_Exec)
	if !ok {
		return false
	}
	path += ".exec"
	e := x.Exec
	if e == nil {
		l.add(path, "required")
		return true
	}
	switch {
	case len(e.Command) > 0 && e.Shell != "":
		l.add(path, "set either command or shell, not both")
	case len(e.Command) == 0 && e.Shell == "":
		l.add(path, "command or shell is required")
	}
	for i, arg := range e.Command {
		if i == 0 && arg == "" {
			l.add(index(path+".command", i), "program name must not be empty")
		}
		if strings.IndexByte(arg, 0) >= 0 {
			noNUL(l, index(path+".command", i), arg)
		}
	}
	if e.Shell != "" && strings.TrimSpace(e.Shell) == "" {
		l.add(path+".shell", "script is blank")
	}
	noNUL(l, path+".shell", e.Shell)
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		p := mapKey(path+".env", k)
		if !envName(k) {
			l.add(p, "invalid environment variable name; use letters, digits and '_', not starting with a digit")
		}
		noNUL(l, p, e.Env[k])
	}
	validateSecretEnv(l, path, e.Env, e.SecretEnv)
	noNUL(l, path+".dir", e.Dir)
	return true
}

// noNUL rejects NUL bytes, which no argument, environment value or path
// handed to the operating system can contain.
func noNUL(l *errs, field, s string) {
	if strings.IndexByte(s, 0) >= 0 {
		l.add(field, "must not contain a NUL byte")
	}
}

// envName reports whether k matches [A-Za-z_][A-Za-z0-9_]*.
func envName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
