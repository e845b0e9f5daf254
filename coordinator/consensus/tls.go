package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds the TLS handshake of an accepted connection.
const handshakeTimeout = 10 * time.Second

// validateTLS checks that a Raft TLS configuration is mutual and trusts a
// CA of its own rather than the system's: a configuration without pools
// would let in anyone with a publicly trusted certificate.
func validateTLS(c *tls.Config) error {
	if c.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("raft: tls must require and verify client certificates")
	}
	if c.ClientCAs == nil || c.RootCAs == nil {
		return errors.New("raft: tls needs the cluster's CA as both ClientCAs and RootCAs")
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil {
		return errors.New("raft: tls has no certificate to serve")
	}
	if len(c.Certificates) == 0 && c.GetClientCertificate == nil {
		return errors.New("raft: tls has no certificate to dial with")
	}
	return nil
}

// tlsStream is a raft.StreamLayer over TCP, and TLS when it has a
// configuration: it then accepts only peers whose certificate its
// configuration verifies and dials with the node's certificate, checking
// the dialed host against the server's. It tells (dropped) when a peer's
// connection to it ends: see crashWatch.
type tlsStream struct {
	ln      net.Listener
	cfg     *tls.Config
	dropped chan time.Time
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// newStreamTransport is raft.NewTCPTransportWithConfig with a tlsStream
// (TLS when cfg is not nil).
func newStreamTransport(bindAddr string, cfg *tls.Config, tc *raft.NetworkTransportConfig) (*raft.NetworkTransport, *tlsStream, error) {
	s, err := newTLSStream(bindAddr, cfg)
	if err != nil {
		return nil, nil, err
	}
	tc.Stream = s
	return raft.NewNetworkTransportWithConfig(tc), s, nil
}

func newTLSStream(bindAddr string, cfg *tls.Config) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, err
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("listen address %s cannot be advertised to peers", ln.Addr())
	}
	return &tlsStream{ln: ln, cfg: cfg, dropped: make(chan time.Time, 1)}, nil
}

// Accept returns the next connection. Its handshake runs at its first read
// or write, in the transport's goroutine for that connection, so a peer
// that never finishes one holds up nothing but itself.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.cfg == nil {
		return &watchedConn{Conn: c, dropped: s.dropped}, nil
	}
	return &watchedConn{Conn: &serverConn{Conn: tls.Server(c, s.cfg)}, dropped: s.dropped}, nil
}

// Dial connects to a peer and completes the handshake within timeout.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.cfg == nil {
		return net.DialTimeout("tcp", string(address), timeout)
	}
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	cfg := s.cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	return d.DialContext(ctx, "tcp", string(address))
}

// Addr is the listener's address, the one peers are told.
func (s *tlsStream) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting.
func (s *tlsStream) Close() error { return s.ln.Close() }

// serverConn completes the TLS handshake, bounded by handshakeTimeout,
// before its first read or write.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// watchedConn is an accepted connection that tells its stream when a read
// fails (the peer closed it, reset it, or died), and when.
type watchedConn struct {
	net.Conn
	dropped chan<- time.Time
	once    sync.Once
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() {
			select {
			case c.dropped <- time.Now():
			default:
			}
		})
	}
	return n, err
}
