// Package mask hides secret values in what a task prints and in what the
// agent reports and logs about it. Each value is replaced by "***", and so
// are the forms a program commonly turns it into: its lines (for a
// multi-line value such as a PEM key), its base64 (standard and URL
// alphabets, padded or not, also where it is part of a longer encoded
// string, as in an HTTP Basic header), its URL escaping (query and path)
// and its JSON string escaping.
//
// Masking is best effort against accidents, not against a task that wants
// to leak a secret (it can print it reversed). Strings shorter than MinLen
// bytes are not masked on their own, so that a secret "a" or a short line
// of a key does not mask every "a" of the output.
package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
)

// Replacement is what a masked value becomes.
const Replacement = "***"

// MinLen is the length of the shortest string masked on its own.
const MinLen = 4

// minFragment is the shortest base64 fragment of a value embedded in a
// longer encoded string that is masked: shorter fragments would match by
// chance.
const minFragment = 8

// Masker replaces a fixed set of secret values. It is safe for concurrent
// use; a nil or empty Masker masks nothing.
type Masker struct {
	// byFirst holds the patterns by their first byte, longest first.
	byFirst [256][][]byte
	maxLen  int
	n       int
}

// New returns a masker of values and of their derived forms.
func New(values ...[]byte) *Masker {
	set := map[string]bool{}
	for _, v := range values {
		for _, p := range variants(v) {
			if len(p) >= MinLen {
				set[string(p)] = true
			}
		}
	}
	m := &Masker{}
	for p := range set {
		b := []byte(p)
		m.byFirst[b[0]] = append(m.byFirst[b[0]], b)
		m.maxLen = max(m.maxLen, len(b))
		m.n++
	}
	for i := range m.byFirst {
		slices.SortFunc(m.byFirst[i], func(a, b []byte) int {
			if len(a) != len(b) {
				return len(b) - len(a)
			}
			return bytes.Compare(a, b)
		})
	}
	return m
}

// Len is the number of patterns the masker looks for.
func (m *Masker) Len() int {
	if m == nil {
		return 0
	}
	return m.n
}

// String masks s.
func (m *Masker) String(s string) string {
	if m.Len() == 0 {
		return s
	}
	out, _ := m.scan(nil, []byte(s), true)
	return string(out)
}

// Bytes masks p; the result may be p itself.
func (m *Masker) Bytes(p []byte) []byte {
	if m.Len() == 0 {
		return p
	}
	out, _ := m.scan(nil, p, true)
	return out
}

// scan appends the masked form of buf to out. Unless final, it stops at
// the first position from which buf could be the start of a pattern that
// more data would complete, and returns the rest.
func (m *Masker) scan(out, buf []byte, final bool) (masked, rest []byte) {
	start := 0 // buf[start:i] is copied to out as is
	for i := 0; i < len(buf); {
		pats := m.byFirst[buf[i]]
		if len(pats) == 0 {
			i++
			continue
		}
		tail := buf[i:]
		matched := 0
		for _, p := range pats {
			if len(tail) >= len(p) {
				if bytes.Equal(tail[:len(p)], p) {
					matched = len(p)
					break
				}
				continue
			}
			// Longest first: a longer pattern this may be the start of
			// wins over a shorter one matching now.
			if !final && bytes.HasPrefix(p, tail) {
				out = append(out, buf[start:i]...)
				return out, tail
			}
		}
		if matched == 0 {
			i++
			continue
		}
		out = append(out, buf[start:i]...)
		out = append(out, Replacement...)
		i += matched
		start = i
	}
	return append(out, buf[start:]...), nil
}

// Stream masks a stream written in pieces: a value split across two
// writes is masked too. It is not safe for concurrent use.
type Stream struct {
	m       *Masker
	pending []byte
}

// Stream returns a new stream of the masker.
func (m *Masker) Stream() *Stream { return &Stream{m: m} }

// Write masks p, continuing what earlier writes left, and returns what may
// be published now: all but a tail (shorter than the longest pattern) that
// may be the start of a value the next write completes. The result is
// valid until the next call.
func (s *Stream) Write(p []byte) []byte {
	if s.m.Len() == 0 {
		return p
	}
	buf := p
	if len(s.pending) > 0 {
		buf = append(s.pending, p...)
	}
	out, rest := s.m.scan(make([]byte, 0, len(buf)), buf, false)
	s.pending = append([]byte(nil), rest...)
	return out
}

// Flush returns the masked tail held back by Write, at the end of the stream.
func (s *Stream) Flush() []byte {
	if len(s.pending) == 0 {
		return nil
	}
	out, _ := s.m.scan(nil, s.pending, true)
	s.pending = nil
	return out
}

// Pending is the number of bytes held back.
func (s *Stream) Pending() int { return len(s.pending) }

// variants returns v and the forms derived from it.
func variants(v []byte) [][]byte {
	forms := [][]byte{v}
	if t := bytes.TrimSpace(v); len(t) != len(v) {
		forms = append(forms, t)
	}
	var out [][]byte
	for _, f := range forms {
		if len(f) == 0 {
			continue
		}
		out = append(out, f)
		out = append(out, encodings(f)...)
	}
	if bytes.ContainsAny(v, "\r\n") {
		for _, line := range bytes.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
			out = append(out, bytes.TrimSpace(line))
		}
	}
	return out
}

// encodings are the base64, URL-escaped and JSON-escaped forms of v.
func encodings(v []byte) [][]byte {
	var out [][]byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, []byte(enc.EncodeToString(v)))
	}
	out = append(out, embeddedBase64(v)...)
	s := string(v)
	out = append(out, []byte(url.QueryEscape(s)), []byte(url.PathEscape(s)))
	if js, err := json.Marshal(s); err == nil && len(js) >= 2 {
		out = append(out, js[1:len(js)-1])
	}
	return out
}

// embeddedBase64 returns the part of the base64 encoding of v that does
// not depend on its neighbours, for each of the three alignments v can
// have in a longer encoded string (base64("user:" + v) holds one of them).
func embeddedBase64(v []byte) [][]byte {
	var out [][]byte
	for off := range 3 {
		buf := make([]byte, off+len(v))
		copy(buf[off:], v)
		enc := base64.RawStdEncoding.EncodeToString(buf)
		// Characters carrying bits of the leading bytes, or of whatever
		// follows v, are dropped.
		from := (8*off + 5) / 6
		to := 8 * (off + len(v)) / 6
		if to-from < minFragment {
			continue
		}
		frag := enc[from:to]
		out = append(out, []byte(frag))
		urlFrag := make([]byte, len(frag))
		for i := range len(frag) {
			switch c := frag[i]; c {
			case '+':
				urlFrag[i] = '-'
			case '/':
				urlFrag[i] = '_'
			default:
				urlFrag[i] = c
			}
		}
		out = append(out, urlFrag)
	}
	return out
}
