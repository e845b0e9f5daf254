package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Pool reads the CA certificates of a PEM file into a pool.
func Pool(caFile string) (*x509.CertPool, error) {
	certs, err := readCerts(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ServerTLS serves certFile and keyFile, read again when they change (see
// Reloader). With caFile, a client may present a certificate: one signed by
// that CA is verified and available to the handler, any other refused; a
// client without one is let in (the API authenticates it by token). Set
// ClientAuth to tls.RequireAndVerifyClientCert on the result to demand one.
func ServerTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	r, err := NewReloader(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	if caFile != "" {
		if cfg.ClientCAs, err = Pool(caFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientTLS trusts only the CAs of caFile and, when certFile and keyFile
// are given (both or neither), presents that certificate to servers that
// ask, read again when the files change. The server's address must be
// among its certificate's names.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client certificate: give both the certificate and the key, or neither")
	}
	pool, err := Pool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if certFile != "" {
		r, err := NewReloader(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = r.GetClientCertificate
	}
	return cfg, nil
}

// PeerTLS is mutual TLS between coordinators (Raft), for both ends of a
// connection: each presents certFile and keyFile (read again when they
// change), and each requires the other's certificate to be signed by the CA
// of caFile and to be a server certificate, valid for both server and
// client authentication. Client and agent certificates of the same CA are
// refused. The dialing end also checks that the address it dialed is among
// the server's names: set ServerName on a copy to the host dialed.
func PeerTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	r, err := NewReloader(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := Pool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       r.GetCertificate,
		GetClientCertificate: r.GetClientCertificate,
		RootCAs:              pool,
		ClientCAs:            pool,
		ClientAuth:           tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyNode(pool, cs.PeerCertificates)
		},
	}, nil
}

// SkipHostname returns a copy of a client configuration that verifies the
// server's certificate chain against cfg.RootCAs but not its names: for a
// process that dials its own listener on loopback, whose certificate may
// name only its public addresses.
func SkipHostname(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	roots := c.RootCAs
	c.InsecureSkipVerify = true // the chain is verified below
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no certificate")
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: intermediates(cs.PeerCertificates),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		return err
	}
	return c
}

// verifyNode checks that a peer's chain leads to the pool and that its
// certificate is valid for both server and client authentication.
func verifyNode(pool *x509.CertPool, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("no certificate: %w", ErrNotNode)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: intermediates(chain),
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return fmt.Errorf("%q: %w: %w", chain[0].Subject.CommonName, ErrNotNode, err)
		}
	}
	return nil
}

func intermediates(chain []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range chain[1:] {
		p.AddCert(c)
	}
	return p
}
