package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const pemKey = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBxk3Vn0m3YgkAExampleExampleExampleExampleAAAAAJgAAAAAAAAAAA
-----END OPENSSH PRIVATE KEY-----
`

// forms returns the ways a test prints a secret; every one must be masked.
func forms(secret string) map[string]string {
	forms := map[string]string{
		"plain":         secret,
		"trimmed":       strings.TrimSpace(secret),
		"std base64":    base64.StdEncoding.EncodeToString([]byte(secret)),
		"url base64":    base64.URLEncoding.EncodeToString([]byte(secret)),
		"raw base64":    base64.RawStdEncoding.EncodeToString([]byte(secret)),
		"raw url b64":   base64.RawURLEncoding.EncodeToString([]byte(secret)),
		"query escaped": url.QueryEscape(secret),
		"path escaped":  url.PathEscape(secret),
	}
	js, _ := json.Marshal(secret)
	forms["json"] = string(js)
	for _, user := range []string{"", "u", "us", "user"} {
		forms["basic auth "+user] = "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
	}
	return forms
}

// leaks reports the parts of secret (the value, its long lines and its
// encodings) found in out.
func leaks(out, secret string) []string {
	var found []string
	check := func(what, s string) {
		if len(s) >= MinLen && strings.Contains(out, s) {
			found = append(found, what+": "+s)
		}
	}
	check("value", secret)
	check("trimmed", strings.TrimSpace(secret))
	for _, l := range strings.Split(secret, "\n") {
		check("line", strings.TrimSpace(l))
	}
	b := []byte(secret)
	check("std", base64.StdEncoding.EncodeToString(b))
	check("url", base64.URLEncoding.EncodeToString(b))
	check("raw", base64.RawStdEncoding.EncodeToString(b))
	check("rawurl", base64.RawURLEncoding.EncodeToString(b))
	if e := url.QueryEscape(secret); e != secret {
		check("query", e)
	}
	if e := url.PathEscape(secret); e != secret {
		check("path", e)
	}
	return found
}

func TestMasksEveryForm(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{
		"hunter2hunter2",
		"p@ss w0rd/with+chars&=?",
		"tok_12345\n",
		`quote"back\slash`,
		pemKey,
		"ab", // shorter than MinLen: its encodings are masked, not the value
	} {
		m := New([]byte(secret))
		for name, form := range forms(secret) {
			text := "before " + form + " after"
			got := m.String(text)
			if len(strings.TrimSpace(secret)) >= MinLen {
				if l := leaks(got, secret); len(l) > 0 {
					t.Errorf("secret %q, form %s: %q leaks %v", secret, name, got, l)
				}
			}
			if !strings.HasPrefix(got, "before ") || !strings.HasSuffix(got, " after") {
				t.Errorf("secret %q, form %s: surroundings changed: %q", secret, name, got)
			}
		}
	}
}

func TestEmbeddedBase64(t *testing.T) {
	t.Parallel()
	secret := "s3cr3t-v4lue-0123"
	m := New([]byte(secret))
	for _, prefix := range []string{"", "a", "ab", "abc", "user:", "x-access-token:"} {
		for _, suffix := range []string{"", "z", "yz", "\n"} {
			enc := base64.StdEncoding.EncodeToString([]byte(prefix + secret + suffix))
			got := m.String(enc)
			if !strings.Contains(got, Replacement) {
				t.Errorf("base64(%q+secret+%q) = %s not masked", prefix, suffix, got)
			}
			// What is left cannot be decoded back to the secret.
			rest := strings.ReplaceAll(got, Replacement, "")
			if dec, _ := base64.StdEncoding.DecodeString(rest); bytes.Contains(dec, []byte(secret)) {
				t.Errorf("base64(%q+secret+%q): %s still decodes to the secret", prefix, suffix, got)
			}
		}
	}
}

func TestShortStringsAloneAreNotMasked(t *testing.T) {
	t.Parallel()
	m := New([]byte("abc"), []byte("xy\nlong-line-1\nz"))
	got := m.String("abc xy z long-line-1")
	if got != "abc xy z ***" {
		t.Errorf("got %q", got)
	}
	if New().String("anything") != "anything" || (*Masker)(nil).String("x") != "x" {
		t.Error("an empty masker changed its input")
	}
}

func TestLongestMatchWins(t *testing.T) {
	t.Parallel()
	m := New([]byte("abcd"), []byte("abcdefgh"))
	if got := m.String("abcdefgh abcd abcdefg"); got != "*** *** ***efg" {
		t.Errorf("got %q", got)
	}
}

// TestStreamAcrossWrites splits a text holding secrets at every position
// (and into single bytes) and checks the stream masks it as a whole.
func TestStreamAcrossWrites(t *testing.T) {
	t.Parallel()
	secrets := []string{"correct-horse-battery", pemKey, "abcd", "abcdefgh"}
	var vals [][]byte
	text := "start "
	for _, s := range secrets {
		vals = append(vals, []byte(s))
		for _, f := range forms(s) {
			text += f + " | "
		}
	}
	text += "abcdefg end"
	m := New(vals...)
	want := m.String(text)
	for i := 0; i <= len(text); i++ {
		s := m.Stream()
		var out []byte
		out = append(out, s.Write([]byte(text[:i]))...)
		out = append(out, s.Write([]byte(text[i:]))...)
		out = append(out, s.Flush()...)
		if string(out) != want {
			t.Fatalf("split at %d:\n got %q\nwant %q", i, out, want)
		}
	}
	s := m.Stream()
	var out []byte
	for i := range len(text) {
		out = append(out, s.Write([]byte{text[i]})...)
		if s.Pending() >= m.maxLen {
			t.Fatalf("pending %d, want < %d", s.Pending(), m.maxLen)
		}
	}
	out = append(out, s.Flush()...)
	if string(out) != want {
		t.Fatalf("byte by byte:\n got %q\nwant %q", out, want)
	}
	for _, sec := range secrets[:2] {
		if l := leaks(want, sec); len(l) > 0 {
			t.Errorf("leaks %v", l)
		}
	}
}

func TestStreamReleasesWhatCannotBeASecret(t *testing.T) {
	t.Parallel()
	m := New([]byte("secret-value"))
	s := m.Stream()
	if got := string(s.Write([]byte("hello secr"))); got != "hello " {
		t.Errorf("got %q, want the text before a possible secret", got)
	}
	if got := string(s.Write([]byte("et-valu"))); got != "" {
		t.Errorf("got %q, want nothing yet", got)
	}
	if got := string(s.Write([]byte("x!"))); got != "secret-valux!" {
		t.Errorf("got %q, want the held text once it is no secret", got)
	}
	if got := string(s.Write([]byte("secret-value\n"))); got != "***\n" {
		t.Errorf("got %q", got)
	}
}

func TestLogger(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	secret := "zap-secret-123"
	log := Logger(zap.New(core), New([]byte(secret))).With(zap.String("with", "w "+secret))
	log.Info("message "+secret,
		zap.String("s", secret),
		zap.Error(errors.New("clone https://u:"+secret+"@host: denied")),
		zap.Strings("list", []string{"a", secret}),
		zap.Any("map", map[string]string{"k": secret}),
		zap.ByteString("b", []byte(secret)),
		zap.Int("n", 3),
	)
	for _, e := range logs.All() {
		line, _ := json.Marshal(map[string]any{"msg": e.Message, "fields": e.ContextMap()})
		if strings.Contains(string(line), secret) {
			t.Errorf("log entry leaks the secret: %s", line)
		}
		if e.ContextMap()["n"] != int64(3) {
			t.Errorf("other fields changed: %v", e.ContextMap())
		}
	}
	if logs.Len() != 1 {
		t.Fatalf("%d entries, want 1", logs.Len())
	}
}

// BenchmarkStream masks log-like output with a token and a PEM key to
// mask: go test -run '^$' -bench Stream ./agent/mask/
func BenchmarkStream(b *testing.B) {
	m := New([]byte("ghp_S3cr3tT0kenValue123"), []byte(pemKey))
	line := []byte("2026-01-01T00:00:00Z step 12/40: compiling package github.com/example/thing (cached: false)\n")
	chunk := bytes.Repeat(line, 32<<10/len(line))
	b.SetBytes(int64(len(chunk)))
	s := m.Stream()
	for b.Loop() {
		s.Write(chunk)
	}
}
