package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gantryci/gantry/internal/pki"
)

// files is a CA and certificates issued by it, written to a directory.
type files struct {
	t   *testing.T
	dir string
	ca  *pki.CA
}

func newFiles(t *testing.T) *files {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	f := &files{t: t, dir: t.TempDir(), ca: ca}
	if err := ca.Write(f.path("ca.pem"), f.path("ca-key.pem"), false); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *files) path(name string) string { return filepath.Join(f.dir, name) }

// issue writes NAME.pem and NAME-key.pem, replacing them if they exist,
// and returns the paths.
func (f *files) issue(req pki.Request) (cert, key string) {
	f.t.Helper()
	p, err := f.ca.Issue(req)
	if err != nil {
		f.t.Fatal(err)
	}
	cert, key = f.path(req.Name+".pem"), f.path(req.Name+"-key.pem")
	if err := p.Write(cert, key, true); err != nil {
		f.t.Fatal(err)
	}
	return cert, key
}

func (f *files) server(name string) *tls.Config {
	f.t.Helper()
	cert, key := f.issue(pki.Request{Kind: pki.Server, Name: name})
	cfg, err := pki.ServerTLS(cert, key, f.path("ca.pem"))
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

func (f *files) client(kind pki.Kind, name string) *tls.Config {
	f.t.Helper()
	cert, key := f.issue(pki.Request{Kind: kind, Name: name})
	cfg, err := pki.ClientTLS(f.path("ca.pem"), cert, key)
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

func (f *files) peer(name string) *tls.Config {
	f.t.Helper()
	cert, key := f.issue(pki.Request{Kind: pki.Server, Name: name})
	cfg, err := pki.PeerTLS(cert, key, f.path("ca.pem"))
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// result is what each end of a connection saw.
type result struct {
	serverErr, clientErr error
	// serverCert is the certificate the client got; clientCert the one the
	// server verified, if any.
	serverCert, clientCert *x509.Certificate
}

// handshake connects a client to a server over loopback TCP. The server
// answers "ok" after a successful handshake; the client reads it, so a
// refusal by the server after the client's side of the handshake (TLS 1.3)
// shows in clientErr too.
func handshake(t *testing.T, server, client *tls.Config) result {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	deadline := time.Now().Add(10 * time.Second)
	type side struct {
		err  error
		peer *x509.Certificate
	}
	served := make(chan side, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- side{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			served <- side{err: err}
			return
		}
		var s side
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			s.peer = certs[0]
		}
		_, s.err = tc.Write([]byte("ok"))
		served <- s
	}()
	var r result
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	cfg := client.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = "localhost"
	}
	tc := tls.Client(c, cfg)
	if r.clientErr = tc.Handshake(); r.clientErr == nil {
		r.serverCert = tc.ConnectionState().PeerCertificates[0]
		buf := make([]byte, 2)
		if _, err := io.ReadFull(tc, buf); err != nil {
			r.clientErr = err
		} else if string(buf) != "ok" {
			r.clientErr = errors.New("server said " + string(buf))
		}
	}
	c.Close()
	s := <-served
	r.serverErr, r.clientCert = s.err, s.peer
	return r
}

func (r result) ok(t *testing.T) {
	t.Helper()
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake failed: server: %v; client: %v", r.serverErr, r.clientErr)
	}
}

func (r result) refusedByServer(t *testing.T) {
	t.Helper()
	if r.serverErr == nil || r.clientErr == nil {
		t.Fatalf("server accepted: server: %v; client: %v", r.serverErr, r.clientErr)
	}
}

func (r result) refusedByClient(t *testing.T) {
	t.Helper()
	if r.clientErr == nil || r.serverCert != nil {
		t.Fatalf("client accepted the server: client: %v", r.clientErr)
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.NotAfter.Sub(ca.Cert.NotBefore) < pki.CAValidity {
		t.Fatalf("CA: IsCA %v, valid %v to %v", ca.Cert.IsCA, ca.Cert.NotBefore, ca.Cert.NotAfter)
	}
	srv, err := ca.Issue(pki.Request{Kind: pki.Server, Name: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Cert.Subject.CommonName != "node1" || !slices.Equal(srv.Cert.DNSNames, []string{"localhost"}) ||
		len(srv.Cert.IPAddresses) != 1 || !srv.Cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("server certificate: CN %q, DNS %v, IP %v", srv.Cert.Subject.CommonName, srv.Cert.DNSNames, srv.Cert.IPAddresses)
	}
	if !slices.Equal(srv.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("server certificate usages %v", srv.Cert.ExtKeyUsage)
	}
	named, err := ca.Issue(pki.Request{Kind: pki.Server, Name: "node2", DNSNames: []string{"n2.example"}, IPs: []net.IP{net.ParseIP("10.0.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(named.Cert.DNSNames, []string{"n2.example"}) || !named.Cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.2")) {
		t.Fatalf("named server certificate: DNS %v, IP %v", named.Cert.DNSNames, named.Cert.IPAddresses)
	}
	agent, err := ca.Issue(pki.Request{Kind: pki.Agent, Name: "builder-1"})
	if err != nil {
		t.Fatal(err)
	}
	if agent.Cert.Subject.CommonName != "agent:builder-1" || !slices.Equal(agent.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("agent certificate: CN %q, usages %v", agent.Cert.Subject.CommonName, agent.Cert.ExtKeyUsage)
	}
	long, err := ca.Issue(pki.Request{Kind: pki.Client, Name: "alice", Validity: 2 * pki.CAValidity})
	if err != nil {
		t.Fatal(err)
	}
	if long.Cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatal("certificate outlives its CA")
	}
	for _, bad := range []pki.Request{
		{Kind: pki.Client, Name: "../alice"},
		{Kind: pki.Client, Name: "alice", DNSNames: []string{"x"}},
		{Kind: "root", Name: "alice"},
	} {
		if _, err := ca.Issue(bad); err == nil {
			t.Errorf("Issue(%+v) succeeded", bad)
		}
	}
}

func TestWriteRefusesOverwriteAndProtectsKeys(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	for _, name := range []string{"ca.pem", "ca-key.pem"} {
		fi, err := os.Stat(f.path(name))
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o644)
		if name == "ca-key.pem" {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	err = other.Write(f.path("ca.pem"), f.path("new-key.pem"), false)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwriting ca.pem: %v, want ErrExist", err)
	}
	if _, err := os.Stat(f.path("new-key.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a refused write left the key behind")
	}
	loaded, err := pki.LoadCA(f.path("ca.pem"), f.path("ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(f.ca.Cert) {
		t.Fatal("ca.pem was replaced")
	}
	if err := other.Write(f.path("ca.pem"), f.path("ca-key.pem"), true); err != nil {
		t.Fatal(err)
	}
	if loaded, err = pki.LoadCA(f.path("ca.pem"), f.path("ca-key.pem")); err != nil || !loaded.Cert.Equal(other.Cert) {
		t.Fatalf("after overwrite: %v", err)
	}
	// A key that is not the certificate's is refused.
	if _, err := pki.LoadCA(f.path("ca.pem"), f.path("new-key.pem")); err == nil {
		t.Fatal("loaded a CA without its key")
	}
	cert, key := f.issue(pki.Request{Kind: pki.Client, Name: "alice"})
	if _, err := pki.LoadCA(cert, key); !errors.Is(err, pki.ErrNotCA) {
		t.Fatalf("LoadCA of a client certificate: %v, want ErrNotCA", err)
	}
	if _, err := pki.LoadKeyPair(cert, f.path("ca-key.pem")); !errors.Is(err, pki.ErrKeyMismatch) {
		t.Fatalf("mismatched pair: %v, want ErrKeyMismatch", err)
	}
}

func TestServerTLS(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	srv := f.server("node1")
	anon, err := pki.ClientTLS(f.path("ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	r := handshake(t, srv, anon)
	r.ok(t)
	if r.serverCert.Subject.CommonName != "node1" || r.clientCert != nil {
		t.Fatalf("server %q, client %v", r.serverCert.Subject.CommonName, r.clientCert)
	}
	// A client certificate from the cluster's CA is verified and seen.
	r = handshake(t, srv, f.client(pki.Client, "alice"))
	r.ok(t)
	if r.clientCert == nil || r.clientCert.Subject.CommonName != "alice" {
		t.Fatalf("server saw client certificate %v", r.clientCert)
	}
	// The server's names are checked.
	wrongName := anon.Clone()
	wrongName.ServerName = "elsewhere.example"
	handshake(t, srv, wrongName).refusedByClient(t)
}

func TestCertificateFromAnotherCARefused(t *testing.T) {
	t.Parallel()
	f, rogue := newFiles(t), newFiles(t)
	// A client certificate from another CA, though the client trusts the
	// cluster's CA.
	cert, key := rogue.issue(pki.Request{Kind: pki.Client, Name: "mallory"})
	mallory, err := pki.ClientTLS(f.path("ca.pem"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, f.server("node1"), mallory).refusedByServer(t)
	// A server certificate from another CA.
	anon, err := pki.ClientTLS(f.path("ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, rogue.server("node1"), anon).refusedByClient(t)
	// Between peers, both ways.
	handshake(t, f.peer("n1"), rogue.peer("n2")).refusedByServer(t)
	handshake(t, rogue.peer("n2"), f.peer("n1")).refusedByClient(t)
}

func TestPeerTLSWantsServerCertificates(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	r := handshake(t, f.peer("n1"), f.peer("n2"))
	r.ok(t)
	if r.clientCert.Subject.CommonName != "n2" || r.serverCert.Subject.CommonName != "n1" {
		t.Fatalf("peers saw %q and %q", r.clientCert.Subject.CommonName, r.serverCert.Subject.CommonName)
	}
	// Client and agent certificates of the same CA are not coordinators.
	for _, kind := range []pki.Kind{pki.Client, pki.Agent} {
		r := handshake(t, f.peer("n1"), f.client(kind, "x"))
		r.refusedByServer(t)
		if !errors.Is(r.serverErr, pki.ErrNotNode) {
			t.Errorf("%s certificate: %v, want ErrNotNode", kind, r.serverErr)
		}
	}
	// No certificate at all.
	anon, err := pki.ClientTLS(f.path("ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, f.peer("n1"), anon).refusedByServer(t)
}

func TestExpiredCertificateRefused(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	old := pki.Request{NotBefore: time.Now().Add(-48 * time.Hour), Validity: 24 * time.Hour}
	srvReq, cliReq := old, old
	srvReq.Kind, srvReq.Name = pki.Server, "expired-node"
	cliReq.Kind, cliReq.Name = pki.Client, "expired-client"
	cert, key := f.issue(srvReq)
	expiredServer, err := pki.ServerTLS(cert, key, f.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := pki.ClientTLS(f.path("ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, expiredServer, anon).refusedByClient(t)
	cert, key = f.issue(cliReq)
	expiredClient, err := pki.ClientTLS(f.path("ca.pem"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, f.server("node1"), expiredClient).refusedByServer(t)
	cert, key = f.issue(pki.Request{Kind: pki.Server, Name: "expired-peer", NotBefore: old.NotBefore, Validity: old.Validity})
	expiredPeer, err := pki.PeerTLS(cert, key, f.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, f.peer("n1"), expiredPeer).refusedByServer(t)
}

func TestReloaderPicksUpNewCertificate(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	cert, key := f.issue(pki.Request{Kind: pki.Server, Name: "node1"})
	srv, err := pki.ServerTLS(cert, key, f.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := pki.ClientTLS(f.path("ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	r := handshake(t, srv, anon)
	r.ok(t)
	first := r.serverCert.SerialNumber

	// Half a rotation: a certificate whose key is not there yet. The old
	// pair stays in use.
	next, err := f.ca.Issue(pki.Request{Kind: pki.Server, Name: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, next.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	r = handshake(t, srv, anon)
	r.ok(t)
	if r.serverCert.SerialNumber.Cmp(first) != 0 {
		t.Fatal("a certificate without its key was served")
	}
	// The rotation completes: the new pair is served, without a restart.
	if err := next.Write(cert, key, true); err != nil {
		t.Fatal(err)
	}
	r = handshake(t, srv, anon)
	r.ok(t)
	if r.serverCert.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("serving serial %v after rotation, want %v", r.serverCert.SerialNumber, next.Cert.SerialNumber)
	}
}

func TestReloaderReload(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	cert, key := f.issue(pki.Request{Kind: pki.Client, Name: "alice"})
	r, err := pki.NewReloader(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate().Leaf.SerialNumber
	f.issue(pki.Request{Kind: pki.Client, Name: "alice"})
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.Certificate().Leaf.SerialNumber.Cmp(first) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload without a key succeeded")
	}
	if r.Certificate() == nil {
		t.Fatal("a failed reload dropped the certificate")
	}
}

func TestEnsureLocalKeepsWhatExists(t *testing.T) {
	dir := t.TempDir()
	l, err := pki.EnsureLocal(dir, "n1", "n2")
	if err != nil {
		t.Fatal(err)
	}
	cert, key := l.CertFiles("n1")
	before, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.ServerTLS(cert, key, l.CAFile()); err != nil {
		t.Fatalf("the node's material does not load: %v", err)
	}
	if _, err := pki.EnsureLocal(dir, "n1", "n3"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(cert)
	if string(before) != string(after) {
		t.Fatal("EnsureLocal replaced an existing certificate")
	}
	if _, err := os.Stat(filepath.Join(dir, "n3.pem")); err != nil {
		t.Fatalf("n3's certificate not made: %v", err)
	}
}
