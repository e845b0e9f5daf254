// Package name is the one grammar for names that users, clients and agents
// choose and that Gantry puts into NATS subjects, file paths, Kubernetes
// labels or the replicated state: agents, jobs, tasks, applications,
// clusters, secrets and label keys.
//
// A name is 1 to 63 bytes of ASCII letters, digits, '-', '_' and '.',
// starting with a letter or digit; it has no "..". A name that becomes one
// NATS subject token (agent, job id, task, cluster, node) also has no '.':
// see Token. Nothing outside this grammar can reach a path ("../x", "/"),
// split a subject ("a.b", "*", ">") or grow a log line without bound.
package name

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gantryci/gantry/internal/limit"
)

// MaxLen is the longest name.
const MaxLen = 63

// ErrInvalid is wrapped by every error of this package.
var ErrInvalid = errors.New("invalid name")

// Check reports whether s is a valid name.
func Check(s string) error { return check(s, true) }

// Token reports whether s is a valid name without '.', usable as one NATS
// subject token and as one path element.
func Token(s string) error { return check(s, false) }

func check(s string, dots bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > MaxLen {
		return fmt.Errorf("%w: %q is longer than %d characters", ErrInvalid, clip(s), MaxLen)
	}
	if !alnum(s[0]) {
		return fmt.Errorf("%w: %q must start with a letter or digit", ErrInvalid, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case alnum(c), c == '-', c == '_':
		case c == '.' && dots:
		default:
			allowed := "letters, digits, '-' and '_'"
			if dots {
				allowed = "letters, digits, '-', '_' and '.'"
			}
			return fmt.Errorf("%w: %q has %q; use %s", ErrInvalid, s, rune(c), allowed)
		}
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("%w: %q has \"..\"", ErrInvalid, s)
	}
	return nil
}

func alnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// clip shortens s for an error message.
func clip(s string) string { return limit.Prefix(s, 40) }
