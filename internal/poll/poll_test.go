package poll_test

import (
	"testing"
	"time"

	"github.com/gantryci/gantry/internal/poll"
)

func TestUntil(t *testing.T) {
	n := 0
	if !poll.Until(5*time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("a condition that comes to hold was reported as not holding")
	}
	if n != 3 {
		t.Fatalf("asked %d times, want 3", n)
	}
	if poll.Every(time.Millisecond, 20*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds was reported as holding")
	}
}
