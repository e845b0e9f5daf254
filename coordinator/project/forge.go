package project

import (
	"context"
	"fmt"
	"strings"

	"github.com/gantryci/gantry/internal/forge"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// forge returns the client of a project's forge and the repository on it;
// nil without a forge or a credential (no statuses, no API).
func (c *Controller) forge(p *gv1.Project) (forge.Client, forge.Repo, error) {
	s := p.GetSpec()
	return c.ForgeClient(s.GetForge(), s.GetForgeUrl(), s.GetRepo(), s.GetCredential())
}

// ForgeClient returns a client of forge kind (at forgeURL, else the
// repository's origin) authenticated with the secret named credential,
// and the repository on it; nil without a forge or a credential.
func (c *Controller) ForgeClient(kindName, forgeURL, repoURL, credential string) (forge.Client, forge.Repo, error) {
	kind, err := forge.ParseKind(kindName)
	if err != nil || kind == forge.None || credential == "" {
		return nil, forge.Repo{}, err
	}
	repo, err := forge.RepoFromURL(repoURL)
	if err != nil {
		return nil, forge.Repo{}, err
	}
	base := forgeURL
	if base == "" {
		if base, err = forge.BaseURL(repoURL); err != nil {
			return nil, forge.Repo{}, err
		}
	}
	token, err := c.Secret(credential)
	if err != nil {
		return nil, forge.Repo{}, err
	}
	cl, err := c.d.Forge(kind, base, strings.TrimSpace(string(token)))
	if err != nil {
		return nil, forge.Repo{}, err
	}
	return cl, repo, nil
}

// HookURL is where forges deliver webhooks: the coordinators' external
// URL (--external-url) and /hooks/git.
func (c *Controller) HookURL() string {
	return strings.TrimSuffix(c.externalURL(), "/") + "/hooks/git"
}

// WebhookURL is where forges deliver a project's webhooks.
func (c *Controller) WebhookURL(p *gv1.Project) string {
	base := p.GetSpec().GetExternalUrl()
	if base == "" {
		base = c.externalURL()
	}
	return strings.TrimSuffix(base, "/") + "/hooks/git"
}

// RegisterHook creates the project's webhook on its forge and returns its
// id; "" without a forge API (the user configures the hook by hand).
func (c *Controller) RegisterHook(ctx context.Context, p *gv1.Project, secret string) (string, error) {
	cl, repo, err := c.forge(p)
	if err != nil || cl == nil {
		return "", err
	}
	events := p.GetSpec().GetEvents()
	if len(events) == 0 {
		events = defaultEvents
	}
	kinds := make([]forge.EventKind, len(events))
	for i, e := range events {
		kinds[i] = forge.EventKind(e)
	}
	id, err := cl.CreateHook(ctx, repo, forge.Hook{URL: c.WebhookURL(p), Secret: secret, Events: kinds})
	if err != nil {
		return "", fmt.Errorf("register webhook on %s: %w", p.GetSpec().GetForge(), err)
	}
	return id, nil
}

// RemoveHook deletes the project's webhook from its forge, if it has one.
func (c *Controller) RemoveHook(ctx context.Context, p *gv1.Project) error {
	if p.GetHookId() == "" {
		return nil
	}
	cl, repo, err := c.forge(p)
	if err != nil || cl == nil {
		return err
	}
	if err := cl.DeleteHook(ctx, repo, p.GetHookId()); err != nil {
		return fmt.Errorf("remove webhook %s from %s: %w", p.GetHookId(), p.GetSpec().GetForge(), err)
	}
	return nil
}
