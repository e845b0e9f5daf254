package client

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// BootstrapACL makes the first admin token of a cluster that has none and
// returns it with its secret, the bearer token to hand to WithToken; it
// needs no token itself. It is not retried: a bootstrap that committed
// before a failover could not be asked again for its secret.
func (c *Client) BootstrapACL(ctx context.Context) (*gv1.BootstrapACLResponse, error) {
	return c.api.BootstrapACL(ctx, &gv1.BootstrapACLRequest{})
}

// CreateToken makes an API token with a role that expires after ttl (zero:
// never). The answer holds its secret, the bearer token, shown only once.
// It is not retried, so that a failover cannot leave a second token whose
// secret nobody has.
func (c *Client) CreateToken(ctx context.Context, name string, role gv1.Role, ttl time.Duration) (*gv1.CreateTokenResponse, error) {
	return c.api.CreateToken(ctx, &gv1.CreateTokenRequest{Name: name, Role: role, TtlSeconds: int64(ttl / time.Second)})
}

// Tokens lists the API tokens, without their secrets.
func (c *Client) Tokens(ctx context.Context) ([]*gv1.TokenInfo, error) {
	resp, err := c.api.ListTokens(ctx, &gv1.ListTokensRequest{})
	return resp.GetTokens(), err
}

// RevokeToken revokes an API token by its id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.api.RevokeToken(ctx, &gv1.RevokeTokenRequest{Id: id})
	return err
}

// WhoAmI describes the token the client sends.
func (c *Client) WhoAmI(ctx context.Context) (*gv1.TokenInfo, error) {
	resp, err := c.api.WhoAmI(ctx, &gv1.WhoAmIRequest{})
	return resp.GetToken(), err
}

// Audit lists the audit log's events, oldest first: those at or after
// since (zero: all kept), at most limit of them (zero: 1000).
func (c *Client) Audit(ctx context.Context, since time.Time, limit int32) ([]*gv1.AuditEvent, error) {
	req := &gv1.ListAuditRequest{Limit: limit}
	if !since.IsZero() {
		req.Since = timestamppb.New(since)
	}
	resp, err := c.api.ListAudit(ctx, req)
	return resp.GetEvents(), err
}
