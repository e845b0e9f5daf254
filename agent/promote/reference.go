package promote

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// reference is an image reference split into its parts, as written: no
// registry or tag is filled in.
type reference struct {
	repo   string // "registry.example:5000/team/web"
	tag    string // "1.2", or empty
	digest string // "sha256:...", or empty
}

func (r reference) String() string {
	s := r.repo
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest
	}
	return s
}

// splitRef splits ref without checking it: "host:5000/web:1@sha256:..."
// is repository "host:5000/web", tag "1", digest "sha256:...". A colon
// before the last slash belongs to a registry's port, not to a tag.
func splitRef(ref string) reference {
	var r reference
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref, r.digest = ref[:i], ref[i+1:]
	}
	slash := strings.LastIndexByte(ref, '/')
	if i := strings.LastIndexByte(ref, ':'); i > slash {
		ref, r.tag = ref[:i], ref[i+1:]
	}
	r.repo = ref
	return r
}

// repository is ref without its tag and digest.
func repository(ref string) string {
	return splitRef(ref).repo
}

// parseRef splits the reference a promotion sets and checks it: a
// repository and a tag, a digest or both (the digest wins where only one
// can be kept).
func parseRef(ref string) (reference, error) {
	r := splitRef(ref)
	if err := checkRepository(r.repo); err != nil {
		return r, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if r.tag == "" && r.digest == "" {
		return r, fmt.Errorf("image reference %q: no tag or digest", ref)
	}
	if r.tag != "" && !validTag(r.tag) {
		return r, fmt.Errorf("image reference %q: invalid tag %q", ref, r.tag)
	}
	if r.digest != "" {
		if _, err := digest.Parse(r.digest); err != nil {
			return r, fmt.Errorf("image reference %q: digest: %w", ref, err)
		}
	}
	return r, nil
}

// checkImage checks the repository a promotion replaces: it has no tag and
// no digest.
func checkImage(image string) error {
	r := splitRef(image)
	if r.tag != "" || r.digest != "" {
		return fmt.Errorf("image %q: name the repository alone, without tag or digest", image)
	}
	if err := checkRepository(image); err != nil {
		return fmt.Errorf("image %q: %w", image, err)
	}
	return nil
}

// checkRepository accepts the characters of the reference grammar
// (host[:port]/path/name) without enforcing all of it: the registry is the
// judge of the rest.
func checkRepository(repo string) error {
	if repo == "" {
		return fmt.Errorf("empty repository")
	}
	for i, part := range strings.Split(repo, "/") {
		if part == "" {
			return fmt.Errorf("empty path component")
		}
		for _, c := range part {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			case i == 0 && (c >= 'A' && c <= 'Z' || c == ':'): // a registry host and port
			default:
				return fmt.Errorf("invalid character %q in repository", c)
			}
		}
	}
	return nil
}

// validTag reports whether t is a tag of the reference grammar.
func validTag(t string) bool {
	if len(t) > 128 {
		return false
	}
	for i, c := range t {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
