package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	k, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %v, want 0600", st.Mode().Perm())
	}
	id, ct, err := k.Seal("db", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("hunter2")) {
		t.Fatal("ciphertext holds the value")
	}
	got, err := k.Open("db", id, ct)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("open = %q, %v", got, err)
	}
	// Bound to its name.
	if _, err := k.Open("other", id, ct); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open under another name: %v, want ErrCorrupt", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := k.Open("db", id, ct); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open tampered: %v, want ErrCorrupt", err)
	}
}

func TestRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	k1, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	id1, ct, _ := k1.Seal("s", []byte("v"))
	k2, err := Create(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Primary() == id1 || !k2.Has(id1) {
		t.Fatalf("rotated keyring: primary %q, has old %v", k2.Primary(), k2.Has(id1))
	}
	if got, err := k2.Open("s", id1, ct); err != nil || string(got) != "v" {
		t.Fatalf("old value under rotated keyring: %q, %v", got, err)
	}
	if _, err := (&Keyring{}).Open("s", id1, ct); !errors.Is(err, ErrNoKey) {
		t.Fatalf("open without key: %v", err)
	}
}

func TestLoadRefusesWorldReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	if _, err := Create(path, false); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, err := Load(path); err == nil {
		t.Fatal("a world-readable keyring loaded")
	}
	// Group-readable by the process's own group (a Secret mounted with
	// the pod's fsGroup) loads; group-writable does not.
	os.Chown(path, -1, os.Getgid())
	os.Chmod(path, 0o440)
	if _, err := Load(path); err != nil {
		t.Errorf("keyring readable by this process's group only: %v", err)
	}
	os.Chmod(path, 0o460)
	if _, err := Load(path); err == nil {
		t.Error("a group-writable keyring loaded")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "k1\n", "k1 notbase64!\n", "k1 c2hvcnQ=\n", "../x AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}
