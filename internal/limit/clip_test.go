package limit_test

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gantryci/gantry/internal/limit"
)

func TestClipKeepsStartAndEnd(t *testing.T) {
	t.Parallel()
	s := "START" + strings.Repeat("x", 10000) + "END"
	got := limit.Clip(s, 100)
	if len(got) > 100 {
		t.Fatalf("Clip to 100 gave %d bytes", len(got))
	}
	if !strings.HasPrefix(got, "START") || !strings.HasSuffix(got, "END") || !strings.Contains(got, "bytes cut]") {
		t.Errorf("Clip = %q; want the start, a cut marker and the end", got)
	}
	if short := "short"; limit.Clip(short, 100) != short {
		t.Error("Clip changed a string within the bound")
	}
}

func TestClipExactCount(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("q", 500) + strings.Repeat("z", 500)
	got := limit.Clip(s, 200)
	kept := strings.Count(got, "q") + strings.Count(got, "z")
	if !strings.Contains(got, "…["+strconv.Itoa(len(s)-kept)+" bytes cut]…") {
		t.Errorf("Clip = %q: the marker must state the bytes cut (%d)", got, len(s)-kept)
	}
}

func FuzzClip(f *testing.F) {
	f.Add("héllo wörld, ünïcode everywhere: 日本語のテキスト", 17)
	f.Add(strings.Repeat("€", 100), 10)
	f.Add("abc", 0)
	f.Add("abc", -1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		got := limit.Clip(s, n)
		if len(got) > max(n, 0) && len(s) > max(n, 0) {
			t.Fatalf("Clip(%d bytes, %d) = %d bytes", len(s), n, len(got))
		}
		if len(s) <= n && got != s {
			t.Fatal("Clip changed a string within the bound")
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Clip split a rune: %q", got)
		}
	})
}
