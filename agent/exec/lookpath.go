package exec

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// lookTTL is how long a resolved program path is reused without looking
// again: a program installed earlier in PATH is found at most this late.
const lookTTL = 2 * time.Second

// lookCacheMax bounds the resolved paths kept (names and PATHs come from
// specs).
const lookCacheMax = 256

// finder resolves program names against the PATH of the process that runs
// them (its environment's, not the agent's: a spec may set PATH). Names
// found are kept for lookTTL; looking a name up stats each directory of
// PATH, which for a short task cost a tenth of the agent's time.
type finder struct {
	mu    sync.Mutex
	found map[[2]string]foundPath
}

type foundPath struct {
	path string
	at   time.Time
}

// find returns the path to run for name under env's PATH. A name with a
// slash is used as it is. Relative PATH entries (and empty ones, which mean
// the working directory) are skipped: a task's directory is not a place
// to find programs in by accident.
func (f *finder) find(name string, env []string, now time.Time) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := envValue(env, "PATH")
	key := [2]string{path, name}
	f.mu.Lock()
	if fp, ok := f.found[key]; ok && now.Sub(fp.at) < lookTTL {
		f.mu.Unlock()
		return fp.path, nil
	}
	f.mu.Unlock()
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			f.mu.Lock()
			if f.found == nil || len(f.found) >= lookCacheMax {
				f.found = map[[2]string]foundPath{}
			}
			f.found[key] = foundPath{p, now}
			f.mu.Unlock()
			return p, nil
		}
	}
	return "", &osexec.Error{Name: name, Err: osexec.ErrNotFound}
}

// forget drops what find keeps for name, e.g. after the path it gave could
// not be run.
func (f *finder) forget(name string, env []string) {
	f.mu.Lock()
	delete(f.found, [2]string{envValue(env, "PATH"), name})
	f.mu.Unlock()
}

// envValue returns the value of the last entry for key in env.
func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
