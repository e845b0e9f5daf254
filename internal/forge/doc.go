// Package forge talks to the code forges Gantry builds from (Gitea and
// Forgejo, GitHub, GitLab) for pipelines as code.
//
// Inbound, it turns a webhook delivery into one Event whatever the forge:
// Detect tells the forge from the headers, RepoURLs reads only the
// repository so the caller can find the project and its secret, Verify
// checks the delivery's signature, and Parse normalizes it. A delivery that
// is valid but nothing to build (a ping, a closed pull request, a branch
// deletion) is ErrIgnored; a body that does not look like its event is
// ErrPayload, naming the field.
//
// Outbound, a Client reports commit statuses, lists open pull requests
// (the fallback when webhooks cannot reach Gantry), registers and deletes
// webhooks, and asks whether a user may have builds run. Each forge needs
// a handful of REST calls, so they are written against net/http and
// encoding/json rather than pulling in a forge SDK: fewer dependencies,
// one place that bounds what is read, and errors (HTTPError) that carry
// the method, path and status but never the token.
//
// Everything read from a forge is bounded: webhook bodies (MaxBody),
// strings in them (refs, URLs, names), the changed-file list
// (MaxChanged), and API responses.
package forge
