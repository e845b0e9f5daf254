package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// A console session stands for an API token the user logged in with. The
// browser holds only the session's id, a random 32-byte value in an
// HttpOnly cookie; the token stays in this process's memory. Sessions are
// not replicated: each coordinator has its own, and a restart logs
// everyone out.

// session is one logged-in browser.
type session struct {
	token   string // the bearer token every API call of the session sends
	name    string // the token's name and role, as WhoAmI told at login
	role    gv1.Role
	expires time.Time
	// done is closed when the session ends (logout, eviction), which ends
	// its event streams.
	done chan struct{}
}

// sessionKey is the SHA-256 of a session id: the map is keyed by the hash,
// so looking an id up takes no time that depends on how much of it is
// right.
type sessionKey [sha256.Size]byte

// sessions is the bounded table of live sessions.
type sessions struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[sessionKey]*session
}

func newSessions(ttl time.Duration, most int) *sessions {
	return &sessions{ttl: ttl, max: max(most, 1), m: map[sessionKey]*session{}}
}

func keyOf(id string) sessionKey { return sha256.Sum256([]byte(id)) }

// create starts a session for token and returns its id. It lasts the
// table's TTL, or until the token expires if that is sooner. A full table
// first forgets expired sessions, then the one that would end first.
func (t *sessions) create(token string, info *gv1.TokenInfo, now time.Time) (string, *session) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s := &session{token: token, name: info.GetName(), role: info.GetRole(), expires: now.Add(t.ttl), done: make(chan struct{})}
	if e := info.GetExpiresAt(); e != nil && e.AsTime().Before(s.expires) {
		s.expires = e.AsTime()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		t.pruneLocked(now)
	}
	for len(t.m) >= t.max {
		var first sessionKey
		var end time.Time
		for k, o := range t.m {
			if end.IsZero() || o.expires.Before(end) {
				first, end = k, o.expires
			}
		}
		t.endLocked(first)
	}
	t.m[keyOf(id)] = s
	return id, s
}

// get returns the live session with this id, or nil.
func (t *sessions) get(id string, now time.Time) *session {
	if id == "" {
		return nil
	}
	k := keyOf(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[k]
	if !ok {
		return nil
	}
	if !now.Before(s.expires) {
		t.endLocked(k)
		return nil
	}
	return s
}

// end ends the session with this id, if there is one.
func (t *sessions) end(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endLocked(keyOf(id))
}

// len is the number of sessions held, expired ones included.
func (t *sessions) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *sessions) pruneLocked(now time.Time) {
	for k, s := range t.m {
		if !now.Before(s.expires) {
			t.endLocked(k)
		}
	}
}

func (t *sessions) endLocked(k sessionKey) {
	if s, ok := t.m[k]; ok {
		close(s.done)
		delete(t.m, k)
	}
}
