package coordinator

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
)

// fakeConn is a NATS connection as the server hands it to natsAuth.
type fakeConn struct {
	tls   *tls.ConnectionState
	user  *server.User
	pipe  bool   // an in-process connection (net.Pipe)
	token string // CONNECT's auth_token
}

func (f *fakeConn) GetOpts() *server.ClientOpts                 { return &server.ClientOpts{Token: f.token} }
func (f *fakeConn) GetTLSConnectionState() *tls.ConnectionState { return f.tls }
func (f *fakeConn) RegisterUser(u *server.User)                 { f.user = u }
func (f *fakeConn) RemoteAddress() net.Addr {
	if f.pipe {
		c, _ := net.Pipe()
		defer c.Close()
		return c.RemoteAddr()
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
}
func (f *fakeConn) GetNonce() []byte { return nil }
func (f *fakeConn) Kind() int        { return server.CLIENT }
func (f *fakeConn) GetID() uint64    { return 1 }

// verified is a connection that presented kp's certificate, verified.
func verified(kp *pki.KeyPair) *fakeConn {
	chain := []*x509.Certificate{kp.Cert}
	return &fakeConn{tls: &tls.ConnectionState{PeerCertificates: chain, VerifiedChains: [][]*x509.Certificate{chain}}}
}

func TestNATSAuth(t *testing.T) {
	t.Parallel()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(k pki.Kind, n string) *pki.KeyPair {
		kp, err := ca.Issue(pki.Request{Kind: k, Name: n})
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	auth := natsAuth{ns: subject.New("prod"), log: zap.NewNop()}
	routes := routeAuth{log: zap.NewNop()}

	node := verified(issue(pki.Server, "n1"))
	if !auth.Check(node) || node.user == nil || node.user.Permissions != nil {
		t.Fatalf("coordinator: want full permissions, got %+v", node.user)
	}
	if !routes.Check(verified(issue(pki.Server, "n2"))) {
		t.Error("route with a server certificate refused")
	}

	a := verified(issue(pki.Agent, "a1"))
	if !auth.Check(a) || a.user == nil || a.user.Permissions == nil {
		t.Fatalf("agent: want permissions, got %+v", a.user)
	}
	p := a.user.Permissions
	if want := []string{"gantry.prod.agent.a1.>", "gantry.prod.log.*.*.a1"}; !slices.Equal(p.Publish.Allow, want) {
		t.Errorf("agent publish = %v, want %v", p.Publish.Allow, want)
	}
	if want := []string{"gantry.prod.ctl.a1.>", "_INBOX.agent.a1.>"}; !slices.Equal(p.Subscribe.Allow, want) {
		t.Errorf("agent subscribe = %v, want %v", p.Subscribe.Allow, want)
	}
	if p.Response == nil || p.Response.MaxMsgs != 1 {
		t.Errorf("agent responses = %+v, want one reply per request", p.Response)
	}
	if routes.Check(verified(issue(pki.Agent, "a1"))) {
		t.Error("route with an agent certificate accepted")
	}

	unverified := issue(pki.Server, "n3")
	for name, c := range map[string]*fakeConn{
		"no tls":      {},
		"no cert":     {tls: &tls.ConnectionState{}},
		"client cert": verified(issue(pki.Client, "alice")),
		"unverified":  {tls: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{unverified.Cert}}},
	} {
		if auth.Check(c) {
			t.Errorf("%s: client accepted", name)
		}
		if routes.Check(c) {
			t.Errorf("%s: route accepted", name)
		}
	}
}

func TestNATSAuthInProcess(t *testing.T) {
	t.Parallel()
	users := &inProcessUsers{}
	node, agent := users.add(pki.Server, "n1"), users.add(pki.Agent, "a1")
	auth := natsAuth{ns: subject.New("prod"), log: zap.NewNop(), inProcess: users}

	c := &fakeConn{pipe: true, token: node}
	if !auth.Check(c) || c.user.Username != "coordinator:n1" || c.user.Permissions != nil {
		t.Fatalf("coordinator in process: want full permissions, got %+v", c.user)
	}
	c = &fakeConn{pipe: true, token: agent}
	if !auth.Check(c) || c.user.Username != "agent:a1" || c.user.Permissions == nil ||
		!slices.Equal(c.user.Permissions.Publish.Allow, auth.agentPermissions("a1").Publish.Allow) {
		t.Fatalf("agent in process: want an agent's permissions, got %+v", c.user)
	}
	for name, c := range map[string]*fakeConn{
		"no token":                 {pipe: true},
		"unknown token":            {pipe: true, token: node + "x"},
		"a token over the network": {token: node},
	} {
		if auth.Check(c) {
			t.Errorf("%s: accepted as %+v", name, c.user)
		}
	}
	if (natsAuth{ns: subject.New("prod"), log: zap.NewNop()}).Check(&fakeConn{pipe: true, token: node}) {
		t.Error("in-process connection accepted by a server that admits none")
	}
}
