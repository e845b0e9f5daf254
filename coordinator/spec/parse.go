// Package spec parses and validates pipelines: the YAML a user writes and
// the JobSpec it becomes. Parse reports every problem it finds with the
// field path and YAML line; Validate applies the same rules to a JobSpec
// however it was built, so specs submitted through the API are held to the
// same standard as YAML ones.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Parse decodes pipeline YAML into a validated JobSpec. On failure it
// returns an *Error or, when there are several problems, an ErrorList.
func Parse(data []byte) (*gv1.JobSpec, error) { return ParseWith(data, nil) }

// ParseWith is Parse with complete, called on the decoded spec before it is
// validated: a project's pipeline is completed with what its build knows
// (its repository as the default build context and exec checkout), so
// that a pipeline file need not repeat it. Errors keep their lines.
func ParseWith(data []byte, complete func(*gv1.JobSpec)) (*gv1.JobSpec, error) {
	if len(data) > MaxDocument {
		return nil, &Error{Msg: fmt.Sprintf("document too large: %d bytes, more than the %s allowed", len(data), size(MaxDocument))}
	}
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{lines: map[string]int{}, containers: map[string]*yaml.Node{}, yamlField: map[string]string{}}
	s := d.decode(root)
	if len(d.errs) == 0 {
		// Decoding problems first: validating a half-decoded spec would
		// mostly repeat them (a task whose exec had the wrong type would
		// also lack an executor).
		if complete != nil {
			complete(s)
		}
		d.errs = validate(s)
	}
	for _, e := range d.errs {
		if f, ok := d.yamlField[e.Field]; ok {
			e.Field = f
		}
		if e.Line == 0 {
			e.Line = d.line(e.Field)
		}
	}
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseYAML reads the single document of data and returns its root node.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// The YAML library panics on some internal errors instead of
		// returning them; a pipeline must never crash the coordinator.
		if r := recover(); r != nil {
			root, err = nil, &Error{Msg: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Msg: "empty document"}
		}
		return nil, syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err)
	default:
		return nil, &Error{Line: next.Line, Msg: "multiple documents; a pipeline is a single YAML document"}
	}
	root = &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.DocumentNode || (root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null") {
		return nil, &Error{Msg: "empty document"}
	}
	return root, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// The YAML library numbers lines inconsistently: its parser reports them
// from 0 and its scanner from 1, and neither names line 1 (line 0 for the
// parser). These are the problems of the parser, and the prefixes of those
// of the scanner; anything else (invalid UTF-8, unknown anchors) comes
// without a line.
var (
	parserProblems = []string{
		"did not find expected <", "did not find expected node content",
		"did not find expected '-' indicator", "did not find expected key",
		"did not find expected ',' or", "found undefined tag handle",
		"found duplicate %", "found incompatible YAML document",
	}
	scannerPrefixes = []string{
		"found ", "could not find ", "did not find ", "mapping keys ",
		"mapping values ", "block sequence ", "exceeded max depth",
	}
)

// syntaxError turns an error of the YAML library ("yaml: line 3: ...") into
// an *Error carrying the line.
func syntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = err.Error()[len(m[0]):]
	}
	hasPrefix := func(p string) bool { return strings.HasPrefix(msg, p) }
	switch {
	case slices.ContainsFunc(parserProblems, hasPrefix):
		line++
	case line == 0 && slices.ContainsFunc(scannerPrefixes, hasPrefix):
		line = 1
	}
	return &Error{Line: line, Msg: "invalid YAML: " + msg}
}
