package name

import (
	"errors"
	"strings"
	"testing"
)

func TestGrammar(t *testing.T) {
	for _, s := range []string{"a", "web", "build-1", "job_2", "A9", strings.Repeat("x", MaxLen)} {
		if err := Token(s); err != nil {
			t.Errorf("Token(%q) = %v, want nil", s, err)
		}
		if err := Check(s); err != nil {
			t.Errorf("Check(%q) = %v, want nil", s, err)
		}
	}
	if err := Check("my.app"); err != nil {
		t.Errorf("Check(my.app) = %v", err)
	}
	if err := Token("my.app"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Token(my.app) = %v, want ErrInvalid", err)
	}
	for _, s := range []string{"", "..", "../etc", "a/b", "-x", ".x", "_x", "a..b", "a b", "a*", "a>", "é", strings.Repeat("x", MaxLen+1), "a\x00"} {
		if err := Check(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", s, err)
		}
	}
}
