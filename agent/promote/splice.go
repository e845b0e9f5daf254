package promote

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// splice applies edits to content in place, leaving every other byte as
// it is, and reports whether it could: each scalar must be found where the
// parser saw it, written the way its style says, on one line. Set checks
// the result against the edited documents before using it.
func splice(content []byte, edits []edit) ([]byte, bool) {
	type cut struct {
		at, end int
		text    string
	}
	starts := []int{0}
	for i, b := range content {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	cuts := make([]cut, 0, len(edits))
	for _, e := range edits {
		if e.line < 1 || e.line > len(starts) || e.col < 1 {
			return nil, false
		}
		at := starts[e.line-1]
		for range e.col - 1 {
			if at >= len(content) || content[at] == '\n' {
				return nil, false
			}
			_, w := utf8.DecodeRune(content[at:])
			at += w
		}
		at = skipProperties(content, at)
		old, ok := written(e.old, e.style, false)
		if !ok || !bytes.HasPrefix(content[at:], []byte(old)) {
			return nil, false
		}
		end := at + len(old)
		if e.style&^yaml.TaggedStyle == 0 && !plainEnds(content, end) {
			return nil, false // a plain scalar that goes on
		}
		text, ok := written(e.new, e.style, true)
		if !ok {
			return nil, false
		}
		cuts = append(cuts, cut{at: at, end: end, text: text})
	}
	slices.SortFunc(cuts, func(a, b cut) int { return a.at - b.at })
	var out bytes.Buffer
	last := 0
	for _, c := range cuts {
		if c.at < last {
			return nil, false
		}
		out.Write(content[last:c.at])
		out.WriteString(c.text)
		last = c.end
	}
	out.Write(content[last:])
	return out.Bytes(), true
}

// skipProperties skips the anchor (&name) and tag (!!str) that may be
// written before the scalar at content[i], where the parser marks its
// start.
func skipProperties(content []byte, i int) int {
	for i < len(content) && (content[i] == '&' || content[i] == '!') {
		for i < len(content) && strings.IndexByte(" \t\r\n", content[i]) < 0 {
			i++
		}
		for i < len(content) && (content[i] == ' ' || content[i] == '\t') {
			i++
		}
	}
	return i
}

// plainEnds reports whether a plain scalar ends before content[i]: at
// the end, a space, a flow indicator, or the colon after a key.
func plainEnds(content []byte, i int) bool {
	switch {
	case i >= len(content):
		return true
	case content[i] == ':':
		return i+1 == len(content) || strings.IndexByte(" \t\r\n", content[i+1]) >= 0
	}
	return strings.IndexByte(" \t\r\n,]}", content[i]) >= 0
}

// written returns how a one-line string scalar of style is written. A new
// plain scalar that would not read back as that string is double-quoted.
func written(value string, style yaml.Style, isNew bool) (string, bool) {
	if value == "" || strings.ContainsAny(value, "\n\r") {
		return "", false
	}
	switch style &^ yaml.TaggedStyle {
	case 0:
		if !isNew || plainString(value) {
			return value, true
		}
		fallthrough
	case yaml.DoubleQuotedStyle:
		for _, c := range value {
			if c == '"' || c == '\\' || c < ' ' || c == 0x7f {
				return "", false
			}
		}
		return `"` + value + `"`, true
	case yaml.SingleQuotedStyle:
		return "'" + strings.ReplaceAll(value, "'", "''") + "'", true
	}
	return "", false
}

// plainString reports whether v written unquoted reads back as the string
// v: "web:1" does, "1.0" (a float) and "true" do not.
func plainString(v string) bool {
	if strings.ContainsAny(v, " \t#,[]{}\"'\\") || strings.ContainsRune("-?:!&*|>%@`", rune(v[0])) {
		return false
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(v), &n); err != nil || len(n.Content) != 1 {
		return false
	}
	c := n.Content[0]
	return c.Kind == yaml.ScalarNode && c.Tag == "!!str" && c.Value == v
}
