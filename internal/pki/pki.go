// Package pki is the cluster's certificate authority: it makes a CA,
// issues the certificates that identify coordinators, clients and agents,
// and builds the TLS configurations that check them.
//
// Every certificate names its holder in the subject: the common name is the
// name (an agent's is "agent:NAME"), the organizational unit its Kind. What
// a certificate may do follows from its extended key usages:
//
//	server  serverAuth + clientAuth  a coordinator: serves the API and HTTP,
//	                                 and serves and dials Raft (PeerTLS)
//	client  clientAuth               a user or program calling the API
//	agent   clientAuth               an agent
//
// Keys are ECDSA P-256. Files are PEM; keys are written 0600.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gantryci/gantry/internal/name"
)

// Kind is what a certificate is for.
type Kind string

const (
	// Server identifies a coordinator. It is valid for both server and
	// client authentication: coordinators dial each other for Raft.
	Server Kind = "server"
	// Client identifies a user or program that calls the API.
	Client Kind = "client"
	// Agent identifies an agent.
	Agent Kind = "agent"
)

const (
	// CAValidity is how long a new CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is how long an issued certificate is valid unless
	// the request says otherwise.
	DefaultValidity = 365 * 24 * time.Hour
	// backdate starts validity a little in the past, for clocks that are
	// slightly behind the issuer's.
	backdate = 5 * time.Minute
)

// DefaultDNSNames and DefaultIPs are a server certificate's subject
// alternative names when the request names none.
var (
	DefaultDNSNames = []string{"localhost"}
	DefaultIPs      = []net.IP{net.IPv4(127, 0, 0, 1)}
)

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CA is a certificate authority: the cluster's root of trust.
type CA struct {
	KeyPair
}

// NewCA makes a self-signed CA named commonName with a new ECDSA P-256
// key, valid for CAValidity.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Gantry"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	return &CA{KeyPair{Cert: cert, Key: key}}, nil
}

// LoadCA reads a CA's certificate and key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	p, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if !p.Cert.IsCA {
		return nil, fmt.Errorf("%s: %w", certFile, ErrNotCA)
	}
	return &CA{*p}, nil
}

// Request describes a certificate to issue.
type Request struct {
	Kind Kind
	// Name is the holder's name (see package name); it becomes the common
	// name, "agent:NAME" for an agent.
	Name string
	// DNSNames and IPs are a server certificate's subject alternative
	// names; DefaultDNSNames and DefaultIPs when both are empty. Clients
	// verify the address they dial against them.
	DNSNames []string
	IPs      []net.IP
	// NotBefore is when validity starts; zero means now (less a few
	// minutes for clock skew).
	NotBefore time.Time
	// Validity is how long the certificate is valid from NotBefore;
	// DefaultValidity when zero.
	Validity time.Duration
	// Role is a client certificate's API role (viewer, developer,
	// operator, admin), kept in its organization as RolePrefix+Role.
	Role string
}

// RolePrefix marks the API role in a client certificate's organization.
const RolePrefix = "gantry-role:"

// CertRole is the API role a client certificate carries, "" for none.
func CertRole(cert *x509.Certificate) string {
	for _, o := range cert.Subject.Organization {
		if r, ok := strings.CutPrefix(o, RolePrefix); ok {
			return r
		}
	}
	return ""
}

// Issue makes a new ECDSA P-256 key and a certificate for it signed by the
// CA. The certificate never outlives the CA.
func (ca *CA) Issue(req Request) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	cert, err := ca.IssueFor(req, key.Public())
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// IssueFor makes a certificate for a public key whose private key the
// holder keeps (an enrolling agent), signed by the CA. Only ECDSA P-256,
// Ed25519 and RSA keys of at least 2048 bits are taken.
func (ca *CA) IssueFor(req Request, pub crypto.PublicKey) (*x509.Certificate, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s certificate %s: ECDSA keys must be P-256", req.Kind, req.Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%s certificate %s: RSA keys must have at least 2048 bits", req.Kind, req.Name)
		}
	default:
		return nil, fmt.Errorf("%s certificate %s: unsupported key type %T", req.Kind, req.Name, pub)
	}
	if err := name.Check(req.Name); err != nil {
		return nil, fmt.Errorf("certificate name: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: req.Name, OrganizationalUnit: []string{string(req.Kind)}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	switch req.Kind {
	case Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames, tmpl.IPAddresses = slices.Clone(req.DNSNames), slices.Clone(req.IPs)
		if len(tmpl.DNSNames) == 0 && len(tmpl.IPAddresses) == 0 {
			tmpl.DNSNames, tmpl.IPAddresses = slices.Clone(DefaultDNSNames), slices.Clone(DefaultIPs)
		}
	case Client, Agent:
		if len(req.DNSNames) > 0 || len(req.IPs) > 0 {
			return nil, fmt.Errorf("%s certificate %s: %w", req.Kind, req.Name, ErrNamesNotServer)
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if req.Kind == Agent {
			tmpl.Subject.CommonName = "agent:" + req.Name
		}
		if req.Kind == Client && req.Role != "" {
			tmpl.Subject.Organization = []string{RolePrefix + req.Role}
		}
	default:
		return nil, fmt.Errorf("certificate kind %q: want %s, %s or %s", req.Kind, Server, Client, Agent)
	}
	tmpl.NotBefore = req.NotBefore
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-backdate)
	}
	validity := req.Validity
	if validity <= 0 {
		validity = DefaultValidity
	}
	tmpl.NotAfter = tmpl.NotBefore.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	var err error
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("%s certificate %s: %w", req.Kind, req.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s certificate %s: %w", req.Kind, req.Name, err)
	}
	return cert, nil
}

// CertPEM is the certificate in PEM.
func (p *KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert.Raw})
}

// KeyPEM is the private key in PEM (PKCS #8).
func (p *KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Write writes the certificate (mode 0644) and the key (0600). Unless
// overwrite is set it refuses, writing neither, when either file exists
// (the error wraps fs.ErrExist). Each file appears whole: it is written
// under a temporary name and then linked or renamed into place, so a
// process reloading the pair never reads half a file.
func (p *KeyPair) Write(certFile, keyFile string, overwrite bool) error {
	key, err := p.KeyPEM()
	if err != nil {
		return err
	}
	if !overwrite {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				return fmt.Errorf("%s: %w", f, os.ErrExist)
			}
		}
	}
	// A Reloader that reads between the two writes finds a key that does
	// not match the certificate and keeps serving the old pair.
	if err := writeFile(keyFile, key, 0o600, overwrite); err != nil {
		return err
	}
	return writeFile(certFile, p.CertPEM(), 0o644, overwrite)
}

// LoadKeyPair reads a certificate and its private key from PEM files and
// checks that they belong together.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, ErrKeyMismatch)
	}
	return &KeyPair{Cert: certs[0], Key: key}, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
