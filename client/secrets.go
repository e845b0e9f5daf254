package client

import (
	"context"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// SetSecret creates or replaces a secret. scope limits where it may be
// used: empty (anywhere), "app:NAME", "job:NAME" or "label:KEY=VALUE".
// Values go in and never come out.
func (c *Client) SetSecret(ctx context.Context, name string, value []byte, scope string) (*gv1.SecretInfo, error) {
	resp, err := c.api.SetSecret(ctx, &gv1.SetSecretRequest{Name: name, Value: value, Scope: scope})
	return resp.GetSecret(), err
}

// Secrets lists the secrets by name, without their values.
func (c *Client) Secrets(ctx context.Context) ([]*gv1.SecretInfo, error) {
	resp, err := c.api.ListSecrets(ctx, &gv1.ListSecretsRequest{})
	return resp.GetSecrets(), err
}

// DeleteSecret deletes a secret; tasks that refer to it fail from then on.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	_, err := c.api.DeleteSecret(ctx, &gv1.DeleteSecretRequest{Name: name})
	return err
}
