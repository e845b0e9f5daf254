package coordinator

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// agentResponseTTL bounds how long an agent may answer a request it
// received (an assignment): one reply each, within this time.
const agentResponseTTL = time.Minute

// natsAuth authorizes the embedded NATS server's clients and routes by the
// certificate they presented, which the TLS handshake has already verified
// against the cluster's CA:
//
//   - a server certificate (a coordinator) may do anything;
//   - an agent certificate "agent:NAME" may publish only below
//     gantry.<cluster>.agent.NAME. and gantry.<cluster>.log. (JetStream
//     publishes of its logs), subscribe only below gantry.<cluster>.ctl.NAME.
//     and its own inbox (subject.AgentInbox), and answer the requests it
//     receives;
//   - a connection in process (net.Pipe, no socket: nothing outside the
//     process can open one) is who its token says (inProcess): the
//     coordinator's own, or `gantry dev`'s agent, with an agent's
//     permissions;
//   - anything else (client certificates, no certificate) is refused.
//
// A route must present a server certificate.
//
// An agent that enrolled with a join token (api/enroll.go) is refused once
// its enrollment is revoked, and with any certificate but the one it
// received.
type natsAuth struct {
	ns       subject.Namespace
	log      *zap.Logger
	enrolled func(agent string) (*gv1.Enrollment, bool)
	// inProcess admits in-process connections (nats.InProcessServer).
	inProcess *inProcessUsers
}

// Check implements server.Authentication for client connections.
func (a natsAuth) Check(c server.ClientAuthentication) bool {
	if addr := c.RemoteAddress(); addr != nil && addr.Network() == "pipe" {
		if kind, holder := a.inProcess.lookup(c.GetOpts().Token); kind != "" {
			a.admit(c, kind, holder)
			return true
		}
		a.log.Warn("nats client refused: in-process connection with no known token")
		return false
	}
	cert := peerCert(c.GetTLSConnectionState())
	if cert == nil {
		a.log.Warn("nats client refused: no certificate", zap.Stringer("remote", c.RemoteAddress()))
		return false
	}
	kind, holder := certIdentity(cert)
	switch kind {
	case pki.Server:
		a.admit(c, kind, holder)
		return true
	case pki.Agent:
		if a.enrolled != nil {
			if e, ok := a.enrolled(holder); ok && (e.GetRevoked() || e.GetSerial() != fmt.Sprintf("%x", cert.SerialNumber)) {
				a.log.Warn("nats client refused: agent enrollment revoked or certificate replaced", zap.String("agent", holder), zap.Stringer("remote", c.RemoteAddress()))
				return false
			}
		}
		a.admit(c, kind, holder)
		return true
	}
	a.log.Warn("nats client refused: not a coordinator or agent certificate",
		zap.String("cn", cert.Subject.CommonName), zap.Stringer("remote", c.RemoteAddress()))
	return false
}

// admit gives a connection of kind (pki.Server or pki.Agent) by holder its
// user and permissions, whether a certificate or an in-process token named
// them.
func (a natsAuth) admit(c server.ClientAuthentication, kind pki.Kind, holder string) {
	if kind == pki.Agent {
		c.RegisterUser(&server.User{Username: "agent:" + holder, Permissions: a.agentPermissions(holder)})
		return
	}
	c.RegisterUser(&server.User{Username: "coordinator:" + holder})
}

// inProcessUsers are the identities of in-process connections by their
// tokens: random, made in this process, never written anywhere.
type inProcessUsers struct {
	mu    sync.Mutex
	users []inProcessUser
}

type inProcessUser struct {
	token  string
	kind   pki.Kind
	holder string
}

// add makes a token for a connection of kind (pki.Server, pki.Agent) by
// holder.
func (u *inProcessUsers) add(kind pki.Kind, holder string) string {
	token := rand.Text()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users = append(u.users, inProcessUser{token: token, kind: kind, holder: holder})
	return token
}

// lookup returns who token belongs to, or "" for no one.
func (u *inProcessUsers) lookup(token string) (pki.Kind, string) {
	if u == nil || token == "" {
		return "", ""
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, x := range u.users {
		if subtle.ConstantTimeCompare([]byte(token), []byte(x.token)) == 1 {
			return x.kind, x.holder
		}
	}
	return "", ""
}

// agentPermissions are what agent name may do on NATS.
func (a natsAuth) agentPermissions(agent string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			a.ns.AgentOwn(agent),
			a.ns.AgentLogs(agent),
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			a.ns.AgentControls(agent),
			subject.AgentInbox(agent) + ".>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: agentResponseTTL},
	}
}

// routeAuth implements server.Authentication for routes: only another
// coordinator, by its server certificate.
type routeAuth struct{ log *zap.Logger }

func (r routeAuth) Check(c server.ClientAuthentication) bool {
	cert := peerCert(c.GetTLSConnectionState())
	if cert != nil {
		if kind, _ := certIdentity(cert); kind == pki.Server {
			return true
		}
	}
	r.log.Warn("nats route refused: not a coordinator certificate", zap.Stringer("remote", c.RemoteAddress()))
	return false
}

func peerCert(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// certIdentity returns the kind of a verified certificate of the cluster's
// CA and its holder's name, or "" when it is none that pki issues: the
// organizational unit names the kind, the common name the holder ("agent:"
// and the name for an agent), and a server certificate is valid for both
// server and client authentication.
func certIdentity(cert *x509.Certificate) (pki.Kind, string) {
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return "", ""
	}
	cn := cert.Subject.CommonName
	switch kind := pki.Kind(cert.Subject.OrganizationalUnit[0]); kind {
	case pki.Server:
		if !hasUsage(cert, x509.ExtKeyUsageServerAuth) || !hasUsage(cert, x509.ExtKeyUsageClientAuth) || name.Check(cn) != nil {
			return "", ""
		}
		return kind, cn
	case pki.Agent:
		agent, ok := strings.CutPrefix(cn, "agent:")
		if !ok || subject.ValidToken(agent) != nil {
			return "", ""
		}
		return kind, agent
	}
	return "", ""
}

func hasUsage(cert *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, have := range cert.ExtKeyUsage {
		if have == u {
			return true
		}
	}
	return false
}

// disconnectRevoked closes the NATS connections of agents whose enrollment
// is revoked, on this coordinator's embedded server, as revocations are
// applied; natsAuth refuses their reconnection.
func (s *Server) disconnectRevoked(ctx context.Context) {
	if s.natsd == nil || !s.cfg.TLS.Enabled() {
		return
	}
	done := map[string]bool{} // revoked agents already disconnected
	for {
		ch := s.fsm.Changed()
		for _, e := range s.fsm.RevokedEnrollments() {
			if done[e] {
				continue
			}
			if srv := s.natsdRef.Load(); srv != nil {
				n := disconnectUser(srv, "agent:"+e)
				s.log.Info("revoked agent disconnected", zap.String("agent", e), zap.Int("connections", n))
			}
			done[e] = true
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		// At most a pass every 200 ms, however fast entries are applied.
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// disconnectUser closes every client connection of NATS user name.
func disconnectUser(srv *server.Server, user string) int {
	cz, err := srv.Connz(&server.ConnzOptions{Username: true, User: user, Limit: 1024})
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range cz.Conns {
		if srv.DisconnectClientByID(c.Cid) == nil {
			n++
		}
	}
	return n
}
