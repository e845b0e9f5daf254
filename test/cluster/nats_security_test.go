package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/poll"
	"github.com/gantryci/gantry/internal/subject"
	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestNATSSecurity attacks the NATS of a 3-node cluster with TLS from the
// outside and from an agent's certificate: clients without a certificate of
// the cluster's CA are turned away; a1's certificate may neither speak for
// a2, nor listen to another agent's or the whole cluster's traffic, nor
// forge forwarded calls or assignments; and the real agent a1 still runs a
// job end to end.
func TestNATSSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, TLS: true})
	c.StartAgent("a1", 2, nil)
	lead := c.Leader()
	c.WaitAgents(lead, "a1")
	l := c.TLS()
	ns := subject.New(c.Name())
	urls := c.NATSURLs()

	t.Run("job over TLS", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		resp, err := c.Client(lead).SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("tls", shellTask("hello", "echo hello"))})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetJob().GetId()
		waitFor(t, 30*time.Second, "the job to succeed on a1", func() bool {
			j, ok := c.Job(lead, id)
			return ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED && j.GetTasks()[0].GetAgent() == "a1"
		})
		// The output went through the log stream: JetStream publishes
		// under the agent's permissions, acknowledged in its own inbox.
		var out strings.Builder
		err = c.API(lead).Logs(ctx, id, "hello", true, func(ch *gv1.LogChunk) error {
			out.Write(ch.GetData())
			return nil
		})
		if err != nil || !strings.Contains(out.String(), "hello") {
			t.Fatalf("log of hello: %q, %v", out.String(), err)
		}
	})

	t.Run("no certificate", func(t *testing.T) {
		if nc, err := nats.Connect(urls, nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Fatal("plain connection accepted")
		}
		if nc, err := nats.Connect(urls, nats.RootCAs(l.CAFile()), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Fatal("TLS connection without a client certificate accepted")
		}
	})

	t.Run("other CA", func(t *testing.T) {
		other, err := pki.EnsureLocal(filepath.Join(t.TempDir(), "other"), "n1")
		if err != nil {
			t.Fatal(err)
		}
		if err := other.EnsureAgent("a1"); err != nil {
			t.Fatal(err)
		}
		for _, files := range [][2]string{pair(other.CertFiles("n1")), pair(other.AgentCertFiles("a1"))} {
			if nc, err := nats.Connect(urls, nats.RootCAs(l.CAFile()), nats.ClientCert(files[0], files[1]), nats.Timeout(5*time.Second)); err == nil {
				nc.Close()
				t.Fatalf("certificate %s of another CA accepted", files[0])
			}
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		ca, err := pki.LoadCA(l.CAFile(), filepath.Join(l.Dir, "ca-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		kp, err := ca.Issue(pki.Request{Kind: pki.Client, Name: "mallory"})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c-key.pem")
		if err := kp.Write(cert, key, false); err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(urls, nats.RootCAs(l.CAFile()), nats.ClientCert(cert, key), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Fatal("a client certificate was let into NATS")
		}
	})

	t.Run("routes only for coordinators", func(t *testing.T) {
		route := c.Config(lead).NATS.ClusterListen
		if err := l.EnsureServer("n9"); err != nil {
			t.Fatal(err)
		}
		// Positive control: a coordinator's certificate passes the
		// route's TLS handshake.
		if err := dialRoute(route, pair(l.CertFiles("n9"))); err != nil {
			t.Fatalf("route TLS with a server certificate: %v", err)
		}
		err := dialRoute(route, pair(l.AgentCertFiles("a1")))
		if err == nil {
			t.Fatal("route TLS with an agent certificate accepted")
		}
		t.Logf("route with an agent certificate: %v", err)
	})

	// watcher is a coordinator's view: it sees every agent subject.
	if err := l.EnsureServer("watcher"); err != nil {
		t.Fatal(err)
	}
	watcher := connectAs(t, urls, l, pair(l.CertFiles("watcher")), "")
	seen := make(chan *nats.Msg, 4096)
	if _, err := watcher.ChanSubscribe("gantry."+c.Name()+".agent.>", seen); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	// The impostor holds a1's certificate, as a stolen one would be.
	impostorErrs := &errLog{}
	impostor := connectAs(t, urls, l, pair(l.AgentCertFiles("a1")), subject.AgentInbox("a1"), nats.ErrorHandler(impostorErrs.handle))

	t.Run("a1 speaks only for itself", func(t *testing.T) {
		// Positive control first: the real a1's heartbeats reach a
		// coordinator over TLS.
		waitMsg(t, seen, ns.Heartbeat("a1"), nil)
		forbidden := []string{ns.Heartbeat("a2"), ns.Report("a2"), ns.Drift("a2"), ns.RPC("SubmitJob"), ns.Assign("a1"), ns.Assign("a2"), ns.Control("a2"), ns.NodeStatus("n1"),
			ns.Log("j", "t", "a2"), ns.LegacyLogs("j", "t")}
		for _, s := range forbidden {
			if err := impostor.Publish(s, []byte("forged")); err != nil {
				t.Fatal(err)
			}
		}
		probe := "gantry." + c.Name() + ".agent.a1.probe"
		if err := impostor.Publish(probe, []byte("probe")); err != nil {
			t.Fatal(err)
		}
		// Everything the impostor published reaches the watcher in order:
		// whatever of a2 came through would arrive before the probe.
		waitMsg(t, seen, probe, func(m *nats.Msg) {
			if strings.Contains(m.Subject, ".a2.") || strings.HasSuffix(m.Subject, ".a2") || m.Subject == ns.LegacyLogs("j", "t") {
				t.Errorf("forged %s delivered", m.Subject)
			}
		})
		for _, s := range forbidden {
			impostorErrs.wait(t, "publish", s)
		}
	})

	t.Run("a1 listens only to its own", func(t *testing.T) {
		everything := make(chan *nats.Msg, 64)
		forbidden := []string{ns.Assign("a2"), "gantry." + c.Name() + ".ctl.a2.>", "gantry.>", ns.AllLogs(), "_INBOX.>", ns.AllHeartbeats()}
		for _, s := range forbidden {
			if _, err := impostor.ChanSubscribe(s, everything); err != nil {
				t.Fatal(err)
			}
		}
		own := make(chan *nats.Msg, 64)
		probe := "gantry." + c.Name() + ".ctl.a1.probe"
		if _, err := impostor.ChanSubscribe(probe, own); err != nil {
			t.Fatal(err)
		}
		if err := impostor.Flush(); err != nil {
			t.Fatal(err)
		}
		// The impostor's interest crosses the cluster's routes on its own
		// time (the watcher may be on another server): probe until one
		// gets through.
		if !poll.Until(15*time.Second, func() bool {
			if err := watcher.Publish(probe, []byte("warm-up")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-own:
				return true
			case <-time.After(100 * time.Millisecond):
				return false
			}
		}) {
			t.Fatalf("no message on %s", probe)
		}
		// Messages the forbidden subscriptions would match (none that a
		// coordinator acts on), then one on the impostor's own subject:
		// from one publisher they arrive in order.
		for _, s := range []string{"gantry." + c.Name() + ".log.x.y", ns.Assign("a2"), "_INBOX.x", probe} {
			if err := watcher.Publish(s, []byte("secret")); err != nil {
				t.Fatal(err)
			}
		}
		for deadline := time.After(15 * time.Second); ; {
			select {
			case m := <-own:
				if string(m.Data) != "secret" {
					continue // a late warm-up probe
				}
			case <-deadline:
				t.Fatalf("no message on %s", probe)
			}
			break
		}
		select {
		case m := <-everything:
			t.Fatalf("a forbidden subscription received %s", m.Subject)
		default:
		}
		for _, s := range forbidden {
			impostorErrs.wait(t, "subscription", s)
		}
	})
}

func pair(a, b string) [2]string { return [2]string{a, b} }

// dialRoute opens a NATS route connection to addr as a peer presenting
// files would: TLS first (the server speaks no plain text on a route port
// with TLS), then one read for the server's verdict on the certificate. A
// refused certificate ends the connection with a TLS alert; past an
// accepted one the server speaks the route protocol (its INFO).
func dialRoute(addr string, files [2]string) error {
	cert, err := tls.LoadX509KeyPair(files[0], files[1])
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(conn, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}) // the attacker trusts anything
	if err := tc.Handshake(); err != nil {
		return err
	}
	_ = tc.SetReadDeadline(time.Now().Add(time.Second))
	_, err = tc.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("route after handshake: %w", err)
}

// connectAs connects with a certificate of the cluster's CA.
func connectAs(t *testing.T, urls string, l *pki.Local, files [2]string, inbox string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append(opts, nats.RootCAs(l.CAFile()), nats.ClientCert(files[0], files[1]), nats.Timeout(5*time.Second))
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatalf("connect with %s: %v", files[0], err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitMsg reads ch until a message on subj arrives, handing every message
// before it to before.
func waitMsg(t *testing.T, ch <-chan *nats.Msg, subj string, before func(*nats.Msg)) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.Subject == subj {
				return
			}
			if before != nil {
				before(m)
			}
		case <-deadline:
			t.Fatalf("no message on %s", subj)
		}
	}
}

// errLog keeps a connection's asynchronous errors.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (e *errLog) handle(_ *nats.Conn, _ *nats.Subscription, err error) {
	e.mu.Lock()
	e.errs = append(e.errs, err)
	e.mu.Unlock()
}

// wait waits for the server's permission violation of op ("publish" or
// "subscription") on subj.
func (e *errLog) wait(t *testing.T, op, subj string) {
	t.Helper()
	waitFor(t, 10*time.Second, "permission violation for "+op+" to "+subj, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, err := range e.errs {
			msg := strings.ToLower(err.Error())
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(msg, op) && strings.Contains(err.Error(), `"`+subj+`"`) {
				return true
			}
		}
		return false
	})
}
