package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem with a pipeline, naming the field path (such as
// "tasks[1].exec.command") and, when the pipeline came from YAML, the line.
type Error struct {
	// Field is the path of the offending field; empty for problems with the
	// document as a whole (syntax errors, empty documents).
	Field string
	// Line is the 1-based YAML line, or 0 when unknown (Validate).
	Line int
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is returned when a pipeline has several problems. It unwraps to
// its elements, so errors.As finds the first *Error as well.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the elements, for errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// errs collects problems while decoding or validating.
type errs []*Error

func (l *errs) add(field, format string, args ...any) {
	*l = append(*l, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (l *errs) addLine(line int, field, format string, args ...any) {
	*l = append(*l, &Error{Field: field, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// maxErrors bounds an ErrorList, so that a large broken pipeline does not
// produce an error message larger than itself.
const maxErrors = 100

// err returns nil, the single *Error or an ErrorList sorted by line (errors
// without a line keep their relative order) and cut to maxErrors.
func (l errs) err() error {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	out := ErrorList(slices.Clone(l))
	slices.SortStableFunc(out, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	if len(out) > maxErrors {
		more := &Error{Msg: fmt.Sprintf("and %d more problems", len(out)-maxErrors)}
		out = append(out[:maxErrors], more)
	}
	return out
}
