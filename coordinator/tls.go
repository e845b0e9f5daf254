package coordinator

import (
	"crypto/tls"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/pki"
)

// TLSConfig names the PEM files of a coordinator's identity: a server
// certificate of the cluster's CA (gantry tls cert create --server), its
// key and the CA's certificate. All three or none: without them every link
// is plain text.
//
// With them, the API (gRPC) and the HTTP endpoints speak TLS with the
// certificate; API clients may present a client certificate of the CA
// (verified if given; they authenticate by token either way). Raft is
// mutual TLS: a peer must present a server certificate of the CA, and the
// certificate of a peer dialed must name the host of its Raft address.
// Replaced certificate and key files are read at the next handshake, so
// certificates rotate without a restart.
type TLSConfig struct {
	CertFile string
	KeyFile  string
	CAFile   string
	// CAKeyFile is the CA's private key: with it the coordinators sign
	// the certificates of agents that enroll with a join token. Optional.
	CAKeyFile string
}

// Enabled reports whether TLS is configured.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// Validate checks that the configuration is complete or empty.
func (c TLSConfig) Validate() error {
	if c.Enabled() && (c.CertFile == "" || c.KeyFile == "" || c.CAFile == "") {
		return errors.New("tls: give the certificate, its key and the CA, or none of them")
	}
	if c.CAKeyFile != "" && !c.Enabled() {
		return errors.New("tls: --tls-ca-key enrolls agents over TLS; give --tls-cert, --tls-key and --tls-ca too")
	}
	return nil
}

// raft is the Raft transport's mutual TLS; nil without TLS.
func (c TLSConfig) raft() (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	return pki.PeerTLS(c.CertFile, c.KeyFile, c.CAFile)
}

// apiCreds are the credentials to dial another coordinator's API with:
// TLS trusting the cluster's CA, presenting this node's certificate.
func (c TLSConfig) apiCreds() (credentials.TransportCredentials, error) {
	if !c.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := pki.ClientTLS(c.CAFile, c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// serveTLS prepares the listeners for TLS when it is configured: it wraps
// the HTTP listener and returns the gRPC server's credentials, and the
// options of this node's own client of its API (the console's), which
// dials loopback and so checks the chain of the certificate but not its
// names.
func (s *Server) serveTLS() (grpc.ServerOption, []client.Option, error) {
	c := s.cfg.TLS
	if !c.Enabled() {
		// Plain text (gantry dev, --insecure): the console's client dials
		// this node's own address, which may be a non-loopback interface.
		return grpc.EmptyServerOption{}, []client.Option{client.WithInsecure()}, nil
	}
	api, err := pki.ServerTLS(c.CertFile, c.KeyFile, c.CAFile)
	if err != nil {
		return nil, nil, err
	}
	web, err := pki.ServerTLS(c.CertFile, c.KeyFile, "")
	if err != nil {
		return nil, nil, err
	}
	self, err := pki.ClientTLS(c.CAFile, c.CertFile, c.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	if !s.cfg.PlainHTTP {
		s.httpLis = tls.NewListener(s.httpLis, web)
	}
	return grpc.Creds(credentials.NewTLS(api)), []client.Option{client.WithTLS(pki.SkipHostname(self))}, nil
}
