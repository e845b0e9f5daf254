package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func pieces(p ...string) func(io.Writer) error {
	return func(w io.Writer) error {
		for _, s := range p {
			if _, err := io.WriteString(w, s); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestSavePrivateWritesOwnerOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.snap")
	// A world-readable file and a leftover temporary file are replaced.
	for _, p := range []string{path, path + ".tmp"} {
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := savePrivate(path, pieces("ab", "cd"))
	if err != nil || n != 4 {
		t.Fatalf("savePrivate = %d, %v", n, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file mode %o, want 600", info.Mode().Perm())
	}
	if data, _ := os.ReadFile(path); string(data) != "abcd" {
		t.Errorf("snapshot file holds %q", data)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}

func TestSavePrivateKeepsOldFileOnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.snap")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("stream broke")
	_, err := savePrivate(path, func(w io.Writer) error {
		if _, err := io.WriteString(w, "partial"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("savePrivate = %v, want the stream's error", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "old" {
		t.Errorf("a failed save replaced the file: %q", data)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}
