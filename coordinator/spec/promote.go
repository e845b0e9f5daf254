package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The promote executor: an image reference committed to a config
// repository, which a GitOps application follows.

func decodePromote(d *decoder, n *yaml.Node, p string, t *gv1.TaskSpec) {
	x := &gv1.PromoteSpec{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"repo": func(p string, v *yaml.Node) {
			g := &gv1.GitSource{}
			d.fields(v, p, map[string]func(string, *yaml.Node){
				"url": func(p string, v *yaml.Node) { g.Url = d.str(v, p) },
				// The write credential: a secret's name.
				"credential": func(p string, v *yaml.Node) { g.Secret = d.str(v, p) },
				"secret":     func(p string, v *yaml.Node) { g.Secret = d.str(v, p) },
			})
			x.Repo = g
		},
		"branch":  func(p string, v *yaml.Node) { x.Branch = d.str(v, p) },
		"file":    func(p string, v *yaml.Node) { x.File = d.str(v, p) },
		"message": func(p string, v *yaml.Node) { x.Message = d.str(v, p) },
		"image": func(p string, v *yaml.Node) {
			im := &gv1.PromoteImage{}
			d.fields(v, p, map[string]func(string, *yaml.Node){
				"name": func(p string, v *yaml.Node) { im.Name = d.str(v, p) },
				"ref":  func(p string, v *yaml.Node) { im.Ref = d.str(v, p) },
			})
			x.Image = im
		},
	})
	t.Executor = &gv1.TaskSpec_Promote{Promote: x}
	if t.Concurrency == "" && x.GetRepo().GetUrl() != "" {
		// Writes to one branch of a config repository are serialized.
		t.Concurrency = PromoteConcurrency(x.GetRepo().GetUrl(), x.GetBranch())
	}
}

// PromoteConcurrency is the concurrency key of promotions to a branch of a
// repository.
func PromoteConcurrency(url, branch string) string {
	sum := sha256.Sum256([]byte(gitsrc.Redact(url) + "#" + branch))
	return "promote-" + hex.EncodeToString(sum[:8])
}

func validatePromote(l *errs, t *gv1.TaskSpec, p string) bool {
	x, ok := t.Executor.(*gv1.TaskSpec_Promote)
	if !ok {
		return false
	}
	p += ".promote"
	pr := x.Promote
	if pr == nil {
		l.add(p, "required")
		return true
	}
	if strings.TrimSpace(pr.GetRepo().GetUrl()) == "" {
		l.add(p+".repo.url", "required: the config repository")
	}
	if s := pr.GetRepo().GetSecret(); s != "" {
		secretName(l, p+".repo.credential", s)
	}
	if pr.GetBranch() == "" {
		l.add(p+".branch", "required: the branch to commit to")
	}
	f := pr.GetFile()
	switch {
	case f == "":
		l.add(p+".file", "required: a manifest or kustomization.yaml in the repository")
	case path.IsAbs(f) || path.Clean(f) != f || f == ".." || strings.HasPrefix(f, "../"):
		l.add(p+".file", "must be a clean path inside the repository, got %q", clip(f))
	}
	if pr.GetImage().GetName() == "" {
		l.add(p+".image.name", "required: the image's repository as the file names it")
	}
	if pr.GetImage().GetRef() == "" {
		l.add(p+".image.ref", "required, e.g. \"{{ .Tasks.image.Outputs.ref }}\"")
	}
	noNUL(l, p+".message", pr.GetMessage())
	return true
}

// The approval executor: a manual gate decided by a person.

// ApprovalRoles are the role names an approval may name.
var ApprovalRoles = []string{"viewer", "developer", "operator", "admin"}

func decodeApproval(d *decoder, n *yaml.Node, p string, t *gv1.TaskSpec) {
	x := &gv1.ApprovalSpec{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"roles":   func(p string, v *yaml.Node) { x.Roles = d.strs(v, p, "") },
		"message": func(p string, v *yaml.Node) { x.Message = d.str(v, p) },
	})
	t.Executor = &gv1.TaskSpec_Approval{Approval: x}
}

func validateApproval(l *errs, t *gv1.TaskSpec, p string) bool {
	x, ok := t.Executor.(*gv1.TaskSpec_Approval)
	if !ok {
		return false
	}
	p += ".approval"
	if len(x.Approval.GetRoles()) > len(ApprovalRoles) {
		l.add(p+".roles", "at most %d roles", len(ApprovalRoles))
	}
	for i, r := range x.Approval.GetRoles() {
		if !slices.Contains(ApprovalRoles, r) {
			l.add(index(p+".roles", i), "unknown role %q; roles are %s", clip(r), strings.Join(ApprovalRoles, ", "))
		}
	}
	length(l, p+".message", x.Approval.GetMessage(), MaxField)
	noNUL(l, p+".message", x.Approval.GetMessage())
	return true
}
