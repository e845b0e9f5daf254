package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Headers the forges send with a delivery. Gitea sends GitHub's event and
// signature headers besides its own, and Forgejo sends Gitea's besides its
// own, so the most specific is looked at first.
const (
	headerForgejoEvent     = "X-Forgejo-Event"
	headerForgejoSignature = "X-Forgejo-Signature"
	headerForgejoDelivery  = "X-Forgejo-Delivery"
	headerGiteaEvent       = "X-Gitea-Event"
	headerGiteaSignature   = "X-Gitea-Signature"
	headerGiteaDelivery    = "X-Gitea-Delivery"
	headerGitHubEvent      = "X-GitHub-Event"
	headerGitHubSignature  = "X-Hub-Signature-256"
	headerGitHubDelivery   = "X-GitHub-Delivery"
	headerGitLabEvent      = "X-Gitlab-Event"
	headerGitLabToken      = "X-Gitlab-Token"
	headerGitLabDelivery   = "X-Gitlab-Event-UUID"
)

// Detect tells which forge sent a delivery from its headers; None and
// false when no forge's event header is there.
func Detect(h http.Header) (Kind, bool) {
	switch {
	case h.Get(headerForgejoEvent) != "":
		return Forgejo, true
	case h.Get(headerGiteaEvent) != "":
		return Gitea, true
	case h.Get(headerGitLabEvent) != "":
		return GitLab, true
	case h.Get(headerGitHubEvent) != "":
		return GitHub, true
	}
	return None, false
}

// Verify checks a delivery against the project's webhook secret, in
// constant time:
//
//   - Gitea, Forgejo: X-Gitea-Signature or X-Forgejo-Signature is the hex
//     HMAC-SHA256 of the body keyed with the secret.
//   - GitHub: X-Hub-Signature-256 is "sha256=" and that hex HMAC.
//   - GitLab: X-Gitlab-Token is the secret itself.
//
// Every failure wraps ErrSignature and names the header; an empty secret
// verifies nothing.
func Verify(kind Kind, h http.Header, body []byte, secret []byte) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: the project has no webhook secret", ErrSignature)
	}
	switch kind {
	case Gitea, Forgejo:
		names := []string{headerGiteaSignature, headerForgejoSignature}
		if kind == Forgejo {
			names[0], names[1] = names[1], names[0]
		}
		for _, name := range names {
			if v := h.Get(name); v != "" {
				return checkHMAC(name, v, body, secret)
			}
		}
		return fmt.Errorf("%w: no %s header", ErrSignature, names[0])
	case GitHub:
		v := h.Get(headerGitHubSignature)
		if v == "" {
			return fmt.Errorf("%w: no %s header", ErrSignature, headerGitHubSignature)
		}
		hexSig, ok := strings.CutPrefix(strings.TrimSpace(v), "sha256=")
		if !ok {
			return fmt.Errorf("%w: %s does not start with sha256=", ErrSignature, headerGitHubSignature)
		}
		return checkHMAC(headerGitHubSignature, hexSig, body, secret)
	case GitLab:
		v := h.Get(headerGitLabToken)
		if v == "" {
			return fmt.Errorf("%w: no %s header", ErrSignature, headerGitLabToken)
		}
		// Compare digests: equal lengths, so the time taken says nothing
		// of the secret's length either.
		got, want := sha256.Sum256([]byte(v)), sha256.Sum256(secret)
		if !hmac.Equal(got[:], want[:]) {
			return fmt.Errorf("%w: %s does not match", ErrSignature, headerGitLabToken)
		}
		return nil
	}
	return fmt.Errorf("%w: forge %q has no webhooks", ErrSignature, kind)
}

// checkHMAC compares a hex HMAC-SHA256 of body with the one a header gave.
func checkHMAC(header, hexSig string, body, secret []byte) error {
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: %s is not a hex SHA-256", ErrSignature, header)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%w: %s does not match the body", ErrSignature, header)
	}
	return nil
}
