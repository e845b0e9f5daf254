package pki

import "errors"

var (
	// ErrNotCA is returned when a CA's certificate is not a CA certificate.
	ErrNotCA = errors.New("not a CA certificate")
	// ErrNoCertificate is returned for a PEM file without a certificate.
	ErrNoCertificate = errors.New("no certificate in file")
	// ErrNoKey is returned for a PEM file without a usable private key.
	ErrNoKey = errors.New("no private key in file")
	// ErrKeyMismatch is returned when a key does not belong to its
	// certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrNamesNotServer is returned when a client or agent certificate is
	// asked for DNS names or IP addresses.
	ErrNamesNotServer = errors.New("only server certificates carry DNS names and IP addresses")
	// ErrNotNode is returned when a peer of a PeerTLS connection presents
	// a certificate that is not a server (node) certificate.
	ErrNotNode = errors.New("peer certificate is not a coordinator certificate")
)
