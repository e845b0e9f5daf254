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

// AgentCertFiles are agent name's certificate and key.
func (l Local) AgentCertFiles(agent string) (cert, key string) {
	return filepath.Join(l.Dir, "agent-"+agent+".pem"), filepath.Join(l.Dir, "agent-"+agent+"-key.pem")
}

// EnsureAgent issues, with the CA in l.Dir, an agent certificate for each
// name that has none yet.
func (l Local) EnsureAgent(agents ...string) error {
	return l.ensure(Agent, agents, l.AgentCertFiles)
}

// EnsureServer issues, with the CA in l.Dir, a server certificate for
// localhost and 127.0.0.1 to each name that has none yet (CertFiles): for
// programs that act as a coordinator towards NATS, such as a benchmark's
// simulated agents.
func (l Local) EnsureServer(nodes ...string) error {
	return l.ensure(Server, nodes, l.CertFiles)
}

func (l Local) ensure(kind Kind, names []string, files func(string) (string, string)) error {
	ca, err := LoadCA(l.CAFile(), filepath.Join(l.Dir, "ca-key.pem"))
	if err != nil {
		return fmt.Errorf("local CA in %s: %w", l.Dir, err)
	}
	for _, n := range names {
		cert, key := files(n)
		if _, err := os.Stat(cert); err == nil {
			continue
		}
		kp, err := ca.Issue(Request{Kind: kind, Name: n})
		if err == nil {
			err = kp.Write(cert, key, false)
		}
		if err != nil {
			return fmt.Errorf("%s certificate of %s: %w", kind, n, err)
		}
	}
	return nil
}
