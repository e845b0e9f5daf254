// Package secret encrypts secret values for the replicated state. The
// coordinators share a keyring: a file of named 256-bit keys, the first of
// which encrypts; the others only decrypt, so a key can be rotated by
// putting a new one first and keeping the old one until the leader has
// re-encrypted every secret under the new one (it does so by itself).
//
// Values are sealed with AES-256-GCM; the secret's name is the additional
// data, so a ciphertext copied to another name does not open.
package secret

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gantryci/gantry/internal/name"
)

// KeySize is the size of a key in bytes (AES-256).
const KeySize = 32

var (
	// ErrNoKey means the keyring has no key of the id a secret was sealed
	// with, or there is no keyring at all.
	ErrNoKey = errors.New("no secret key")
	// ErrCorrupt means a ciphertext does not open with its key.
	ErrCorrupt = errors.New("secret does not decrypt")
)

// Key is one named key.
type Key struct {
	ID   string
	aead cipher.AEAD
}

// Keyring holds the coordinators' keys; the first one is the primary.
type Keyring struct {
	keys []Key
}

// Primary returns the id of the key new values are sealed with.
func (k *Keyring) Primary() string {
	if k == nil || len(k.keys) == 0 {
		return ""
	}
	return k.keys[0].ID
}

// Has reports whether the keyring holds key id.
func (k *Keyring) Has(id string) bool {
	_, ok := k.key(id)
	return ok
}

func (k *Keyring) key(id string) (Key, bool) {
	if k == nil {
		return Key{}, false
	}
	for _, key := range k.keys {
		if key.ID == id {
			return key, true
		}
	}
	return Key{}, false
}

// Seal encrypts value for the secret called secretName with the primary key.
func (k *Keyring) Seal(secretName string, value []byte) (keyID string, ciphertext []byte, err error) {
	if k == nil || len(k.keys) == 0 {
		return "", nil, ErrNoKey
	}
	key := k.keys[0]
	nonce := make([]byte, key.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("nonce: %w", err)
	}
	return key.ID, key.aead.Seal(nonce, nonce, value, []byte(secretName)), nil
}

// Open decrypts a value sealed by Seal.
func (k *Keyring) Open(secretName, keyID string, ciphertext []byte) ([]byte, error) {
	key, ok := k.key(keyID)
	if !ok {
		return nil, fmt.Errorf("secret %q is sealed with key %q: %w", secretName, keyID, ErrNoKey)
	}
	n := key.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, fmt.Errorf("secret %q: %w", secretName, ErrCorrupt)
	}
	out, err := key.aead.Open(nil, ciphertext[:n], ciphertext[n:], []byte(secretName))
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", secretName, ErrCorrupt)
	}
	return out, nil
}

// Parse reads a keyring: one key a line, "ID BASE64", the first line the
// primary; blank lines and lines starting with '#' are skipped.
func Parse(data []byte) (*Keyring, error) {
	k := &Keyring{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, enc, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("keyring line %d: want \"ID BASE64-KEY\"", n)
		}
		if err := name.Token(id); err != nil {
			return nil, fmt.Errorf("keyring line %d: key id: %w", n, err)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("keyring line %d: key %q: want %d bytes in base64", n, id, KeySize)
		}
		if k.Has(id) {
			return nil, fmt.Errorf("keyring line %d: key %q twice", n, id)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("keyring line %d: %w", n, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keyring line %d: %w", n, err)
		}
		k.keys = append(k.keys, Key{ID: id, aead: aead})
	}
	if len(k.keys) == 0 {
		return nil, errors.New("keyring: no key")
	}
	return k, nil
}

// Load reads a keyring file. No one but this process's user and group may
// read it, and no one else write it: mode 0600, or 0640/0440 with the
// file's group one of the process's own (a Kubernetes Secret mounted with
// the pod's fsGroup is group-readable).
func Load(path string) (*Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o037 != 0 || (perm&0o040 != 0 && !ownGroup(st)) {
		return nil, fmt.Errorf("keyring %s: mode %v: readable by others; chmod 600 it", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// NewKeyLine returns a keyring line with a fresh random key named after now.
func NewKeyLine(now time.Time) (string, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("key: %w", err)
	}
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	id := fmt.Sprintf("k%s-%x", now.UTC().Format("20060102"), suffix)
	return id + " " + base64.StdEncoding.EncodeToString(raw) + "\n", nil
}

// Create writes a new keyring file with one fresh key, mode 0600. With
// rotate, an existing file keeps its keys after the new one (which becomes
// the primary); without, an existing file is left alone.
func Create(path string, rotate bool) (*Keyring, error) {
	old, err := os.ReadFile(path)
	switch {
	case err == nil && !rotate:
		return Load(path)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("keyring: %w", err)
	}
	line, err := NewKeyLine(time.Now())
	if err != nil {
		return nil, err
	}
	data := append([]byte(line), old...)
	if _, err := Parse(data); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return Load(path)
}

// ownGroup reports whether the file's group is one of this process's.
func ownGroup(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	if int(sys.Gid) == os.Getgid() {
		return true
	}
	groups, _ := os.Getgroups()
	return slices.Contains(groups, int(sys.Gid))
}
