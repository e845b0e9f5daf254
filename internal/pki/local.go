package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Local is the TLS material of a cluster on one machine (gantry dev,
// gantry bench --local, tests): a CA and one server certificate per node
// for localhost and 127.0.0.1, in one directory.
type Local struct {
	Dir string
}

// CAFile is the CA certificate clients trust.
func (l Local) CAFile() string { return filepath.Join(l.Dir, "ca.pem") }

// CertFiles are node's certificate and key.
func (l Local) CertFiles(node string) (cert, key string) {
	return filepath.Join(l.Dir, node+".pem"), filepath.Join(l.Dir, node+"-key.pem")
}

// EnsureLocal creates, in dir, a CA and a server certificate for each
// node, keeping what is already there: a restarted node keeps its
// material.
func EnsureLocal(dir string, nodes ...string) (Local, error) {
	l := Local{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return l, err
	}
	caCert, caKey := l.CAFile(), filepath.Join(dir, "ca-key.pem")
	ca, err := LoadCA(caCert, caKey)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = NewCA("gantry local CA"); err == nil {
			err = ca.Write(caCert, caKey, false)
		}
	}
	if err != nil {
		return l, fmt.Errorf("local CA in %s: %w", dir, err)
	}
	for _, n := range nodes {
		cert, key := l.CertFiles(n)
		if _, err := os.Stat(cert); err == nil {
			continue
		}
		kp, err := ca.Issue(Request{Kind: Server, Name: n})
		if err == nil {
			err = kp.Write(cert, key, false)
		}
		if err != nil {
			return l, fmt.Errorf("certificate of %s: %w", n, err)
		}
	}
	return l, nil
}
