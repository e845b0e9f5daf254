package exec

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/gantryci/gantry/internal/limit"
)

// OutputsEnv names the file an exec task may write its outputs to, one
// `key=value` a line; later tasks read them as {{ .Tasks.NAME.Outputs.key }}.
const OutputsEnv = "GANTRY_OUTPUTS"

// maxOutputsFile is the most of an outputs file that is read: every output
// at its longest, with its key.
const maxOutputsFile = limit.ReportOutputs * (limit.OutputValue + 128)

var outputsSeq atomic.Uint64

// outputsPath is where a run's outputs file goes: next to the working
// directories, never inside a checkout. The file is not created: a task
// that writes no outputs costs nothing.
func (r *Runner) outputsPath() string {
	return filepath.Join(r.root, ".outputs-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(outputsSeq.Add(1), 10))
}

// readOutputs reads and removes the outputs file at path. Lines that are
// not key=value, with a key of letters, digits, '_', '-' or '.', are
// skipped with a note; so is what lies past maxOutputsFile. The agent
// bounds the count and the values (and masks secrets) before reporting.
func readOutputs(path string, note func(string)) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		if !os.IsNotExist(err) {
			note(fmt.Sprintf("outputs: %v", err))
		}
		return nil
	}
	defer os.Remove(path)
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOutputsFile+1))
	if err != nil {
		note(fmt.Sprintf("outputs: %v", err))
		return nil
	}
	if len(data) > maxOutputsFile {
		note(fmt.Sprintf("outputs: %s holds more than %d bytes; the rest is ignored", OutputsEnv, maxOutputsFile))
		data = data[:maxOutputsFile]
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxOutputsFile+1)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok || !validOutputKey(k) {
			note(fmt.Sprintf("outputs: line %d ignored: want key=value with a key of letters, digits, _ - or .", n))
			continue
		}
		out[string(k)] = string(v)
	}
	return out
}

func validOutputKey(k []byte) bool {
	if len(k) == 0 || len(k) > 128 {
		return false
	}
	for _, c := range k {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}
