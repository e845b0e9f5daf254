package pki

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
)

// Reloader serves a certificate and key from files and reads them again
// when they change, so certificates are rotated by replacing the files:
// every handshake that asks for the certificate first compares the files'
// identity, size and modification time with those of the pair it holds.
// A pair that cannot be loaded (say the certificate was replaced but its
// key not yet) leaves the previous one in use and is tried again at the
// next handshake. Connections already established keep their certificate.
type Reloader struct {
	certFile, keyFile string

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]os.FileInfo // of certFile and keyFile when cert was read
}

// NewReloader loads certFile and keyFile.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files now, changed or not (on SIGHUP, say). On error
// the previous pair stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := r.stat()
	if err != nil {
		return err
	}
	return r.load(stamp)
}

// Certificate returns the current pair, read again first if either file
// changed.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stamp, err := r.stat(); err == nil && r.changed(stamp) {
		_ = r.load(stamp) // on error, keep the current pair; retried next time
	}
	return r.cert
}

// GetCertificate is a tls.Config.GetCertificate for servers.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// GetClientCertificate is a tls.Config.GetClientCertificate for clients.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// stat is taken before the files are read: a change after it shows up as
// a change at the next handshake.
func (r *Reloader) stat() ([2]os.FileInfo, error) {
	var s [2]os.FileInfo
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("certificate: %w", err)
		}
		s[i] = fi
	}
	return s, nil
}

func (r *Reloader) changed(s [2]os.FileInfo) bool {
	for i, fi := range s {
		old := r.stamp[i]
		if old == nil || !os.SameFile(old, fi) || !old.ModTime().Equal(fi.ModTime()) || old.Size() != fi.Size() {
			return true
		}
	}
	return false
}

func (r *Reloader) load(stamp [2]os.FileInfo) error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &c, stamp
	return nil
}
