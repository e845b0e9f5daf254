package limit

import (
	"fmt"
	"unicode/utf8"
)

// Clip returns s cut to at most n bytes, keeping its start and its end
// around a marker that says how much was cut: the start of an error says
// what failed and the end why. The result stays valid UTF-8 when s is.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	// Size the marker for the largest count it could state (every byte),
	// then state the exact count: the result is never longer than n.
	room := n - len(marker(len(s)))
	if room < 2 {
		return runeStart(s, n)
	}
	head := runeStart(s, room/2)
	tail := runeEnd(s, room-len(head))
	return head + marker(len(s)-len(head)-len(tail)) + tail
}

func marker(cut int) string { return fmt.Sprintf(" …[%d bytes cut]… ", cut) }

// runeStart returns the longest prefix of s of at most n bytes that does
// not split a rune.
func runeStart(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// runeEnd returns the longest suffix of s of at most n bytes that does not
// split a rune.
func runeEnd(s string, n int) string {
	if n >= len(s) {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// Prefix returns s, or its first n bytes (never splitting a rune) followed
// by "…": for quoting a value in an error message.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return runeStart(s, n) + "…"
}
