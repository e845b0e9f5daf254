package forge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gantryci/gantry/internal/limit"
)

// EventKind is what a delivery asks to build.
type EventKind string

// Event kinds. Webhooks and polling give Push, Tag and PullRequest;
// Manual and Cron are runs Gantry starts itself.
const (
	Push        EventKind = "push"
	Tag         EventKind = "tag"
	PullRequest EventKind = "pull_request"
	Manual      EventKind = "manual"
	Cron        EventKind = "cron"
)

// Bounds on what a delivery may carry.
const (
	// MaxBody is the largest delivery body taken (GitHub caps its
	// payloads at 25 MB).
	MaxBody = 25 << 20
	// MaxChanged is the most changed paths an Event lists.
	MaxChanged = 10000

	maxRef      = 1 << 10 // a ref, and so a branch or tag name
	maxURL      = 2 << 10 // one repository URL
	maxName     = 256     // a login, an action, a delivery id
	maxPath     = 4 << 10 // one changed path; a longer one is left out
	maxRepoURLs = 16
)

// Event is a webhook delivery normalized.
type Event struct {
	Kind EventKind
	// Repo is every spelling of the repository's URL the payload gives
	// (clone, web, SSH), at least one, without duplicates.
	Repo []string
	// Ref is the full ref to fetch: refs/heads/main, refs/tags/v1,
	// refs/pull/7/head, refs/merge-requests/7/head (GitLab).
	Ref string
	// Branch is the pushed branch, or a pull request's target (base)
	// branch; empty for a tag.
	Branch string
	Tag    string // the pushed tag
	// SHA is the commit to build: the pushed commit (an annotated tag
	// peeled to its commit when the payload says which) or a pull
	// request's head.
	SHA string
	// Before is the commit a push replaced (all zeros for a new branch);
	// empty otherwise.
	Before      string
	PullRequest int // pull or merge request number; 0 otherwise
	// Action is opened, synchronize (new commits) or reopened for a pull
	// request; empty otherwise.
	Action string
	// Fork tells that a pull request's head lives in another repository
	// than its base; one whose payload does not name both repositories
	// counts as a fork.
	Fork bool
	// Author is the pusher, or the pull request's author (GitLab: the
	// user whose action sent the delivery).
	Author string
	// Changed lists the paths added, modified or removed by a push's
	// commits, at most MaxChanged; nil when the payload lists no commits
	// (pull requests, a new branch at an existing commit, a push back to
	// an older commit): nil means unknown, not none.
	Changed []string
	// Truncated tells that Changed is incomplete: more than MaxChanged
	// paths, a path too long to keep, or fewer commits listed than pushed
	// (Gitea and GitLab list only the first few and say how many there
	// were; GitHub lists at most 2048 and does not say).
	Truncated bool
	// Deleted marks a push deleting its branch or tag; Parse returns such
	// an Event with ErrIgnored.
	Deleted bool
	// Delivery is the forge's id of the delivery, when it sends one.
	Delivery string
}

// Parse normalizes a verified delivery from kind. It returns ErrIgnored
// for a delivery that is nothing to build; the Event then holds what was
// read before the delivery was found to be ignored, for logging. A body
// that does not look like its event is ErrPayload naming the field.
//
// Pushes to refs/tags/ are Tag events. Pull requests are built when
// opened, reopened or given new commits (GitHub "synchronize", Gitea
// "synchronized", GitLab "update" with oldrev); other actions are
// ignored, and so are pings, Gitea's create and delete events (a push
// event comes with them), and event types Gantry does not build.
func Parse(kind Kind, h http.Header, body []byte) (Event, error) {
	var ev Event
	if len(body) > MaxBody {
		return ev, fmt.Errorf("%w: body of %d bytes is over %d", ErrPayload, len(body), MaxBody)
	}
	delivery, err := headerText(h, deliveryHeaders(kind))
	if err != nil {
		return ev, err
	}
	ev.Delivery = delivery
	event, err := eventType(kind, h)
	if err != nil {
		return ev, err
	}
	switch kind {
	case Gitea, Forgejo, GitHub:
		err = parseHub(&ev, event, body)
	case GitLab:
		err = parseGitLab(&ev, event, body)
	default:
		err = fmt.Errorf("%w: forge %q has no webhooks", ErrPayload, kind)
	}
	return ev, err
}

// RepoURLs reads only the repository URLs of a delivery of any event
// type, so that the caller can find the project, and its secret, before
// verifying the delivery. The URLs are as Event.Repo has them. h is
// taken for symmetry with Parse; no forge needs it today.
func RepoURLs(kind Kind, h http.Header, body []byte) ([]string, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: body of %d bytes is over %d", ErrPayload, len(body), MaxBody)
	}
	switch kind {
	case Gitea, Forgejo, GitHub:
		var p struct {
			Repository *hubRepo `json:"repository"`
		}
		if err := decode(body, &p); err != nil {
			return nil, err
		}
		return p.Repository.urls()
	case GitLab:
		var p struct {
			Project    *glProject    `json:"project"`
			Repository *glRepository `json:"repository"`
		}
		if err := decode(body, &p); err != nil {
			return nil, err
		}
		return glURLs(p.Project, p.Repository)
	}
	return nil, fmt.Errorf("%w: forge %q has no webhooks", ErrPayload, kind)
}

// eventType reads the header naming the delivery's event.
func eventType(kind Kind, h http.Header) (string, error) {
	var names []string
	switch kind {
	case Gitea:
		names = []string{headerGiteaEvent, headerForgejoEvent}
	case Forgejo:
		names = []string{headerForgejoEvent, headerGiteaEvent}
	case GitHub:
		names = []string{headerGitHubEvent}
	case GitLab:
		names = []string{headerGitLabEvent}
	default:
		return "", fmt.Errorf("%w: forge %q has no webhooks", ErrPayload, kind)
	}
	v, err := headerText(h, names)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fmt.Errorf("%w: no %s header", ErrPayload, names[0])
	}
	return v, nil
}

func deliveryHeaders(kind Kind) []string {
	switch kind {
	case Gitea:
		return []string{headerGiteaDelivery, headerForgejoDelivery}
	case Forgejo:
		return []string{headerForgejoDelivery, headerGiteaDelivery}
	case GitHub:
		return []string{headerGitHubDelivery}
	case GitLab:
		return []string{headerGitLabDelivery}
	}
	return nil
}

// headerText is the first of the named headers that is set, checked as
// text.
func headerText(h http.Header, names []string) (string, error) {
	for _, name := range names {
		if v := h.Get(name); v != "" {
			return text("header "+name, strings.TrimSpace(v), maxName)
		}
	}
	return "", nil
}

// decode reads a body, naming the field that has the wrong JSON type.
func decode(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return fmt.Errorf("%w: field %s: JSON %s where %s belongs", ErrPayload, te.Field, te.Value, te.Type)
	}
	if len(body) > 0 && body[0] != '{' {
		return fmt.Errorf("%w: not a JSON object (is the hook's content type application/json?)", ErrPayload)
	}
	return fmt.Errorf("%w: %w", ErrPayload, err)
}

// text checks a string from a payload: valid UTF-8, no control
// characters, at most max bytes.
func text(field, s string, max int) (string, error) {
	if len(s) > max {
		return "", fmt.Errorf("%w: %s is longer than %d bytes", ErrPayload, field, max)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %s is not UTF-8", ErrPayload, field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: %s has a control character", ErrPayload, field)
		}
	}
	return s, nil
}

// required is text that must not be empty.
func required(field, s string, max int) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: field %s missing", ErrPayload, field)
	}
	return text(field, s, max)
}

// commitID checks a commit id from a payload and lowercases it; empty is
// refused when must is set.
func commitID(field, s string, must bool) (string, error) {
	if s == "" && !must {
		return "", nil
	}
	if s == "" {
		return "", fmt.Errorf("%w: field %s missing", ErrPayload, field)
	}
	if !isSHA(s) {
		return "", fmt.Errorf("%w: field %s is not a commit id: %q", ErrPayload, field, limit.Prefix(s, 80))
	}
	return strings.ToLower(s), nil
}

// isSHA tells whether s is a full SHA-1 or SHA-256 commit id in hex.
func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// isZero tells whether a commit id is all zeros: the ref did not exist
// before, or does not any more.
func isZero(sha string) bool { return strings.Trim(sha, "0") == "" }

// pushRef fills the ref, kind, commits and deletion of a push, shared by
// all forges. peeled is the commit an annotated tag points to, when the
// payload says. It returns ErrIgnored for a deletion or a push to
// anything but a branch or tag.
func pushRef(ev *Event, ref, before, after, peeled string, deleted bool) error {
	var err error
	if ev.Ref, err = required("ref", ref, maxRef); err != nil {
		return err
	}
	if b, ok := strings.CutPrefix(ev.Ref, "refs/heads/"); ok && b != "" {
		ev.Kind, ev.Branch = Push, b
	} else if t, ok := strings.CutPrefix(ev.Ref, "refs/tags/"); ok && t != "" {
		ev.Kind, ev.Tag = Tag, t
	} else if !strings.HasPrefix(ev.Ref, "refs/") {
		return fmt.Errorf("%w: field ref is not a full ref: %q", ErrPayload, limit.Prefix(ev.Ref, 80))
	}
	if ev.Before, err = commitID("before", before, false); err != nil {
		return err
	}
	if (after != "" && isZero(after)) || deleted {
		ev.Deleted = true
		return fmt.Errorf("%w: deletion of %s", ErrIgnored, ev.Ref)
	}
	if ev.SHA, err = commitID("after", after, true); err != nil {
		return err
	}
	if ev.Kind == "" {
		return fmt.Errorf("%w: push to %s, neither a branch nor a tag", ErrIgnored, ev.Ref)
	}
	if ev.Kind == Tag && isSHA(peeled) && !isZero(peeled) {
		ev.SHA = strings.ToLower(peeled)
	}
	return nil
}

// changes gathers a push's changed paths, once each, bounded.
type changes struct {
	seen      map[string]struct{}
	list      []string
	truncated bool
}

func (c *changes) add(lists ...[]string) {
	if c.seen == nil {
		c.seen = make(map[string]struct{})
	}
	for _, l := range lists {
		for _, p := range l {
			if p == "" {
				continue
			}
			if _, err := text("path", p, maxPath); err != nil {
				c.truncated = true
				continue
			}
			if _, ok := c.seen[p]; ok {
				continue
			}
			if len(c.list) == MaxChanged {
				c.truncated = true
				return
			}
			c.seen[p] = struct{}{}
			c.list = append(c.list, p)
		}
	}
}

// repoURLs checks and deduplicates the URL spellings a payload gives;
// field names the first one, for the error when none is given.
func repoURLs(field string, candidates ...string) ([]string, error) {
	var out []string
	for _, u := range candidates {
		if u == "" || len(out) == maxRepoURLs {
			continue
		}
		if _, err := text("repository URL", u, maxURL); err != nil {
			return nil, err
		}
		dup := false
		for _, o := range out {
			dup = dup || o == u
		}
		if !dup {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: field %s missing", ErrPayload, field)
	}
	return out, nil
}

// login is the first non-empty name, checked.
func login(field string, names ...string) (string, error) {
	for _, n := range names {
		if n != "" {
			return text(field, n, maxName)
		}
	}
	return "", nil
}
