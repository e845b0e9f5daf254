package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/pki"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Enrollment is how an agent obtains its own certificate with a join token
// (gantry agent-token create): it makes a key, sends the public half to a
// coordinator with the token, and keeps the certificate it receives. The
// private key never leaves Dir.
type Enrollment struct {
	// Name is the agent's name; the certificate is for it alone.
	Name string
	// JoinToken is "gjoin_ID_SECRET".
	JoinToken string
	// Addrs are coordinators' gRPC addresses.
	Addrs []string
	// CAFile is the cluster's CA certificate: the coordinators'
	// certificates are checked against it.
	CAFile string
	// Dir keeps the key and the certificate (agent.pem, agent-key.pem),
	// created 0700.
	Dir string
}

// renewBefore is how long before expiry a kept certificate is replaced by
// enrolling again.
const renewBefore = 7 * 24 * time.Hour

// Enroll returns the files of the agent's certificate and key: those kept
// in e.Dir when they are for e.Name and valid for a while yet, else new
// ones from the coordinators. A revoked or unknown join token is refused
// with Unauthenticated.
func Enroll(ctx context.Context, e Enrollment) (certFile, keyFile string, err error) {
	if err := name.Token(e.Name); err != nil {
		return "", "", fmt.Errorf("enroll: agent name: %w", err)
	}
	if e.CAFile == "" || len(e.Addrs) == 0 {
		return "", "", errors.New("enroll: the cluster's CA (--tls-ca) and a coordinator's address (--coordinator) are needed")
	}
	certFile, keyFile = filepath.Join(e.Dir, "agent.pem"), filepath.Join(e.Dir, "agent-key.pem")
	if kept, err := pki.LoadKeyPair(certFile, keyFile); err == nil &&
		kept.Cert.Subject.CommonName == "agent:"+e.Name && time.Until(kept.Cert.NotAfter) > renewBefore {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return "", "", fmt.Errorf("enroll: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("enroll: key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", fmt.Errorf("enroll: %w", err)
	}
	tc, err := pki.ClientTLS(e.CAFile, "", "")
	if err != nil {
		return "", "", fmt.Errorf("enroll: %w", err)
	}
	c, err := client.New(e.Addrs, client.WithTLS(tc))
	if err != nil {
		return "", "", fmt.Errorf("enroll: %w", err)
	}
	defer c.Close()
	resp, err := c.Raw().EnrollAgent(ctx, &gv1.EnrollAgentRequest{
		JoinToken: e.JoinToken, Agent: e.Name,
		PublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	})
	if err != nil {
		return "", "", fmt.Errorf("enroll agent %s: %w", e.Name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("enroll: %w", err)
	}
	if err := writePrivate(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})); err != nil {
		return "", "", err
	}
	if err := writePrivate(certFile, resp.GetCertificate()); err != nil {
		return "", "", err
	}
	if _, err := pki.LoadKeyPair(certFile, keyFile); err != nil {
		return "", "", fmt.Errorf("enroll: the certificate received does not fit the key: %w", err)
	}
	return certFile, keyFile, nil
}

// writePrivate writes data to path, mode 0600, replacing it atomically.
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	return nil
}
