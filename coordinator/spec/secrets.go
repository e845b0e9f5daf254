package spec

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Secrets in a pipeline are referred to by name; their values never appear
// in the spec. The coordinator resolves the names a task refers to
// (SecretRefs) when it hands the task to an agent. In YAML:
//
//	exec/run:  env: {TOKEN: {secret: NAME}}   (lands in secret_env)
//	run:       registry_auth: {HOST: NAME}
//	build:     secrets: {ID: NAME}, registry_auth: {HOST: NAME}
//	git:       secret: NAME   (build.context.git, deploy.source.git)

// SecretRefs returns the names of the secrets t refers to, sorted and
// without repeats: the coordinator checks at submit that they exist and
// resolves them when it assigns the task.
func SecretRefs(t *gv1.TaskSpec) []string {
	var refs []string
	add := func(m map[string]string) {
		for _, v := range m {
			refs = append(refs, v)
		}
	}
	addGit := func(g *gv1.GitSource) {
		if g.GetSecret() != "" {
			refs = append(refs, g.GetSecret())
		}
	}
	switch x := t.GetExecutor().(type) {
	case *gv1.TaskSpec_Exec:
		add(x.Exec.GetSecretEnv())
		addGit(x.Exec.GetCheckout())
	case *gv1.TaskSpec_Run:
		add(x.Run.GetSecretEnv())
		add(x.Run.GetRegistryAuth())
	case *gv1.TaskSpec_Build:
		add(x.Build.GetSecrets())
		add(x.Build.GetRegistryAuth())
		addGit(x.Build.GetContext().GetGit())
	case *gv1.TaskSpec_Deploy:
		addGit(x.Deploy.GetSource().GetGit())
	case *gv1.TaskSpec_Promote:
		addGit(x.Promote.GetRepo())
	}
	slices.Sort(refs)
	return slices.Compact(refs)
}

// env decodes the env mapping of an exec or run spec (at path): a value is
// a string, or {secret: NAME} for a variable that holds a secret. The
// second kind lands in the returned secretEnv, whose entries are recorded
// under secretPath (the executor's secret_env) so that the problems
// validation finds with them name the YAML field.
func (d *decoder) env(n *yaml.Node, path, secretPath string) (env, secretEnv map[string]string) {
	d.pairs(n, path, func(key string, v *yaml.Node) {
		if deref(v).Kind != yaml.MappingNode {
			if env == nil {
				env = map[string]string{}
			}
			env[key] = d.strAt(v, func() string { return mapKey(path, key) })
			return
		}
		p := mapKey(path, key)
		var secret string
		d.fields(v, p, map[string]func(string, *yaml.Node){
			"secret": func(p string, v *yaml.Node) { secret = d.str(v, p) },
		})
		if secretEnv == nil {
			secretEnv = map[string]string{}
		}
		secretEnv[key] = secret
		d.yamlField[mapKey(secretPath, key)] = p
	}, mapKey, MaxEnv, "environment variables")
	return env, secretEnv
}

// decodeGit decodes a Git source (build.context.git, deploy.source.git).
func decodeGit(d *decoder, n *yaml.Node, p string) *gv1.GitSource {
	g := &gv1.GitSource{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"url":      func(p string, v *yaml.Node) { g.Url = d.str(v, p) },
		"revision": func(p string, v *yaml.Node) { g.Revision = d.str(v, p) },
		"secret":   func(p string, v *yaml.Node) { g.Secret = d.str(v, p) },
	})
	return g
}

// validateSecretEnv checks the secret_env of an exec or run spec (path is
// the executor's) and that env and secret_env together stay within MaxEnv.
func validateSecretEnv(l *errs, path string, env, secretEnv map[string]string) {
	if n := len(env) + len(secretEnv); n > MaxEnv {
		l.add(path+".env", "at most %d environment variables are allowed (env and secret_env together), got %d", MaxEnv, n)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(secretEnv)) {
		p := mapKey(path+".secret_env", k)
		if !envName(k) {
			l.add(p, "invalid environment variable name; use letters, digits and '_', not starting with a digit")
		}
		if _, ok := env[k]; ok {
			l.add(p, "also set in env; a variable is either plain or a secret")
		}
		secretName(l, p, secretEnv[k])
	}
}

// validateSecretMap checks a mapping of keys to secret names (build
// secrets, registry_auth): at most MaxSecrets entries, each key checked by
// key.
func validateSecretMap(l *errs, field string, m map[string]string, key func(string) error) {
	if len(m) > MaxSecrets {
		l.add(field, "at most %d entries are allowed, got %d", MaxSecrets, len(m))
		return
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p := mapKey(field, k)
		if err := key(k); err != nil {
			l.add(p, "%v", err)
		}
		secretName(l, p, m[k])
	}
}

// secretID checks the id of a BuildKit secret (RUN --mount=type=secret,id=ID).
func secretID(id string) error {
	if err := name.Token(id); err != nil {
		return fmt.Errorf("invalid secret id: %s", nameProblem(err))
	}
	return nil
}

// secretName checks the name of a secret. Names are literal: templates are
// not expanded in them.
func secretName(l *errs, field, s string) {
	err := name.Token(s)
	if err == nil {
		return
	}
	hint := ""
	if strings.Contains(s, "{{") {
		hint = " (secret names are literal; templates are not expanded in them)"
	}
	l.add(field, "invalid secret name: %s%s", nameProblem(err), hint)
}

// nameProblem is the message of an error of package name without its
// "invalid name: " prefix.
func nameProblem(err error) string {
	return strings.TrimPrefix(err.Error(), name.ErrInvalid.Error()+": ")
}

// registryHost checks a registry host as it appears in image references:
// host[:port], the host a DNS name, an IPv4 address or an IPv6 address in
// brackets; no scheme, no path.
func registryHost(s string) error {
	const example = "; write the host as in image references, e.g. registry.example.com:5000"
	switch {
	case s == "":
		return errors.New("invalid registry host: empty")
	case len(s) > maxHost:
		return fmt.Errorf("invalid registry host: longer than %d bytes", maxHost)
	case strings.Contains(s, "://"):
		return fmt.Errorf("invalid registry host %q: no scheme%s", clip(s), example)
	case strings.Contains(s, "/"):
		return fmt.Errorf("invalid registry host %q: no path%s", clip(s), example)
	}
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || port[0] == '+' {
			return fmt.Errorf("invalid registry host %q: bad port %q%s", clip(s), clip(port), example)
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		if ip := net.ParseIP(host[1 : len(host)-1]); ip == nil || ip.To4() != nil {
			return fmt.Errorf("invalid registry host %q: bad IPv6 address%s", clip(s), example)
		}
		return nil
	}
	if !dnsName(host) {
		return fmt.Errorf("invalid registry host %q: use a DNS name or IP address and an optional port%s", clip(s), example)
	}
	return nil
}

// maxHost is the longest registry host: a DNS name (253) and a port.
const maxHost = 253 + len(":65535")

// dnsName reports whether s is a DNS name (which includes IPv4 addresses):
// labels of letters, digits and '-', not starting or ending with '-',
// separated by dots.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
				return false
			}
		}
	}
	return true
}
