package exec

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// allowlist is the part of the agent's environment every process gets (see
// the package documentation).
var allowlist = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ"}

// defaultPath is the PATH of a process when the agent has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ValidEnvName reports whether s can name an environment variable: not
// empty, no '=' and no NUL.
func ValidEnvName(s string) error {
	if s == "" || strings.ContainsAny(s, "=\x00") {
		return fmt.Errorf("bad environment variable name %q", s)
	}
	return nil
}

// inheritedEnv returns the entries of the agent's environment named by the
// allowlist and by pass, in that order.
func inheritedEnv(pass []string) ([]string, error) {
	var env []string
	seen := map[string]bool{}
	for _, k := range append(slices.Clone(allowlist), pass...) {
		if err := ValidEnvName(k); err != nil {
			return nil, fmt.Errorf("pass env: %w", err)
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		} else if k == "PATH" {
			env = append(env, "PATH="+defaultPath)
		}
	}
	return env, nil
}

// environment is the environment of the process of req: the inherited
// entries, req.Env, the spec's env and its secret_env, later ones winning.
func environment(req Request, inherited []string) ([]string, error) {
	spec := req.Spec
	env := slices.Concat(inherited, req.Env)
	for _, k := range slices.Sorted(maps.Keys(spec.GetEnv())) {
		v := spec.GetEnv()[k]
		if ValidEnvName(k) != nil || strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("invalid spec: bad environment variable %q", k)
		}
		env = append(env, k+"="+v)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.GetSecretEnv())) {
		name := spec.GetSecretEnv()[k]
		if err := ValidEnvName(k); err != nil {
			return nil, fmt.Errorf("invalid spec: secret_env: %w", err)
		}
		v, ok := req.Secrets[name]
		if !ok {
			return nil, fmt.Errorf("exec.secret_env[%s]: secret %q is not in the assignment", k, name)
		}
		if strings.IndexByte(string(v), 0) >= 0 {
			return nil, fmt.Errorf("exec.secret_env[%s]: secret %q holds a NUL byte, which an environment variable cannot", k, name)
		}
		env = append(env, k+"="+string(v))
	}
	return env, nil
}
