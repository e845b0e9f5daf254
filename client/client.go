package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/vt"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// DefaultRetryTimeout is how long a call refused as Unavailable is retried
// unless WithRetryTimeout says otherwise.
const DefaultRetryTimeout = 30 * time.Second

// ErrNoAddress is returned by New when it is given no address.
var ErrNoAddress = errors.New("no coordinator address")

// Client talks to a Gantry cluster through the coordinators' gRPC API. It
// is safe for concurrent use; Close releases it.
type Client struct {
	conn *conn
	api  gv1.GantryServiceClient
}

// Option configures a Client.
type Option func(*options)

type options struct {
	creds    credentials.TransportCredentials
	token    string
	retryFor time.Duration
	dial     []grpc.DialOption
}

// WithTLS makes the client speak TLS with cfg. Without WithTLS or
// WithTransportCredentials, connections are not encrypted.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.creds = credentials.NewTLS(cfg) }
}

// WithTransportCredentials sets the transport credentials of every
// connection; it replaces WithTLS.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = creds }
}

// WithInsecure allows plain text to addresses that are not loopback: the
// token and every answer cross the network in clear. For a trusted network
// or a coordinator started with --insecure only. Plain text to loopback
// addresses (gantry dev) needs no option.
func WithInsecure() Option {
	return func(o *options) { o.creds = insecure.NewCredentials() }
}

// WithToken sends "authorization: Bearer TOKEN" with every call. Without
// TLS the token travels in clear text.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

type callTokenKey struct{}

// WithCallToken returns a context whose calls send token instead of the
// client's own (WithToken); an empty token sends none. A server that calls
// Gantry for its users, such as the console, passes each user's token so.
func WithCallToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, callTokenKey{}, token)
}

// WithRetryTimeout sets how long after its first attempt a call refused as
// Unavailable is retried (DefaultRetryTimeout); never past the call's
// context's deadline. Zero turns retrying off: every refusal is returned
// at once.
func WithRetryTimeout(d time.Duration) Option {
	return func(o *options) { o.retryFor = d }
}

// WithDialOptions adds gRPC dial options, applied after the client's own
// (transport credentials and message size limits).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// New returns a client of the coordinators at addrs (host:port). An element
// may itself list several addresses separated by commas, as GANTRY_ADDR
// does. Any coordinator of a cluster answers every call (followers forward
// writes to the leader); calls go to one address and move on to the next
// when it cannot answer, and writes go to the leader's address once an
// answer named it among addrs. New does not connect: the first call does.
func New(addrs []string, opts ...Option) (*Client, error) {
	o := options{retryFor: DefaultRetryTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	var list []string
	for _, a := range addrs {
		for _, s := range strings.Split(a, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
	}
	if len(list) == 0 {
		return nil, ErrNoAddress
	}
	if o.creds == nil {
		// No TLS asked for: plain text, but only where it never leaves the
		// machine.
		for _, a := range list {
			if !loopback(a) {
				return nil, fmt.Errorf("%s is not a loopback address: use TLS (WithTLS; the CLI's --tls-ca), or WithInsecure (--plaintext) for a trusted network", a)
			}
		}
		o.creds = insecure.NewCredentials()
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		// Requests are encoded by the generated methods (vt.Codec); answers
		// are decoded by proto, which checks their strings are UTF-8.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit.Message), grpc.MaxCallSendMsgSize(limit.Message), grpc.ForceCodec(vt.Codec{})),
	}, o.dial...)
	c := &conn{token: o.token, retryFor: o.retryFor, addrs: list}
	for _, a := range list {
		cc, err := grpc.NewClient(a, dial...)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("connect %s: %w", a, err)
		}
		c.ccs = append(c.ccs, cc)
	}
	return &Client{conn: c, api: gv1.NewGantryServiceClient(c)}, nil
}

// Close closes the client's connections.
func (c *Client) Close() error { return c.conn.close() }

// Raw returns the generated API client, for calls the typed methods do not
// cover. Its calls carry the token and the read index, move on to another
// coordinator and are retried like the typed methods' are.
func (c *Client) Raw() gv1.GantryServiceClient { return c.api }

// Index returns the highest state index the client has seen an answer
// from. Reads are never answered from an older state.
func (c *Client) Index() uint64 { return c.conn.index.Load() }

// loopback reports whether addr (host:port) names this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
