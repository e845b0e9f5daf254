// Package render resolves the templates in a task spec before the leader
// hands the task to an agent: {{ .Tasks.NAME.Outputs.KEY }} reads an output
// of an earlier task of the job, {{ .Revision }} the commit a build of the
// job checked out. Build and run specs are rendered; exec specs are not (a
// shell script may well contain "{{"). Templates are limited to printing
// those values (see Refs), so that what they render to is bounded.
package render

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"

	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// revisionOutput is the output a build with a Git context records.
const revisionOutput = "revision"

// agentRevision is what {{ .Revision }} renders to in build.push: the agent
// substitutes it once it has resolved the Git revision it builds.
const agentRevision = "{{ .Revision }}"

// ErrTemplate marks a template that cannot be rendered.
var ErrTemplate = errors.New("template")

// Task returns a copy of t with its templates rendered. outputs holds the
// outputs of the job's tasks by task name (tasks that did not succeed have
// none). A reference to a missing task or output is an error naming the
// field.
//
// tr is the trigger of a project's build (nil for a submitted job): it
// gives {{ .Branch }}, {{ .Tag }}, {{ .Event }} and {{ .PullRequest }}
// (empty when not applicable), and {{ .Revision }} the commit built unless
// a needed build has its own.
func Task(t *gv1.TaskSpec, outputs map[string]map[string]string, tr *gv1.Trigger) (*gv1.TaskSpec, error) {
	if !needsRender(t) {
		return t, nil
	}
	t = proto.Clone(t).(*gv1.TaskSpec)
	r := &renderer{tasks: map[string]any{}, trigger: tr}
	for name, out := range outputs {
		r.tasks[name] = map[string]any{"Outputs": out}
	}
	// .Revision is the revision of the first needed task that has one,
	// else the commit the build is for.
	r.revision = tr.GetSha()
	for _, n := range t.GetNeeds() {
		if rev, ok := outputs[n][revisionOutput]; ok {
			r.revision = rev
			break
		}
	}
	switch x := t.Executor.(type) {
	case *gv1.TaskSpec_Build:
		b := x.Build
		if g := b.GetContext().GetGit(); g != nil {
			r.str("build.context.git.url", &g.Url)
			r.str("build.context.git.revision", &g.Revision)
		}
		if c := b.GetContext(); c != nil {
			r.str("build.context.dir", &c.Dir)
		}
		r.str("build.dockerfile", &b.Dockerfile)
		r.str("build.target", &b.Target)
		r.strMap("build.args", b.Args)
		// The agent knows the revision of its own Git context.
		saved := r.revision
		if b.GetContext().GetGit().GetUrl() != "" {
			r.revision = agentRevision
		}
		r.str("build.push", &b.Push)
		r.revision = saved
		if c := b.GetCache(); c != nil {
			r.str("build.cache.ref", &c.Ref)
		}
	case *gv1.TaskSpec_Run:
		r.str("run.image", &x.Run.Image)
		for i := range x.Run.Command {
			r.str(fmt.Sprintf("run.command[%d]", i), &x.Run.Command[i])
		}
		r.strMap("run.env", x.Run.Env)
		r.str("run.dir", &x.Run.Dir)
	case *gv1.TaskSpec_Promote:
		if im := x.Promote.GetImage(); im != nil {
			r.str("promote.image.ref", &im.Ref)
		}
		r.str("promote.message", &x.Promote.Message)
		// The commit says what it promotes from; the agent adds the job.
		if r.revision != "" && r.revision != agentRevision {
			x.Promote.Message = strings.TrimSpace(x.Promote.Message + "\n\nSource-Commit: " + r.revision)
		}
	case *gv1.TaskSpec_Deploy:
		d := x.Deploy
		r.strMap("deploy.images", d.Images)
		if src := d.GetSource(); src != nil {
			if g := src.GetGit(); g != nil {
				r.str("deploy.source.git.url", &g.Url)
				r.str("deploy.source.git.revision", &g.Revision)
			}
			r.str("deploy.source.path", &src.Path)
			r.str("deploy.source.dir", &src.Dir)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if n := proto.Size(t); n > MaxTask {
		return nil, fmt.Errorf("%w: rendered task is %d bytes, more than the %d allowed", ErrTemplate, n, MaxTask)
	}
	return t, nil
}

func needsRender(t *gv1.TaskSpec) bool {
	switch t.Executor.(type) {
	case *gv1.TaskSpec_Build, *gv1.TaskSpec_Run, *gv1.TaskSpec_Deploy, *gv1.TaskSpec_Promote:
		return true
	}
	return false
}

type renderer struct {
	tasks    map[string]any
	trigger  *gv1.Trigger
	revision string
	err      error
}

func (r *renderer) str(field string, p *string) { *p = r.render(field, *p) }

func (r *renderer) strMap(field string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		m[k] = r.render(fmt.Sprintf("%s[%q]", field, k), m[k])
	}
}

func (r *renderer) render(field, s string) string {
	if r.err != nil || !strings.Contains(s, "{{") {
		return s
	}
	// The spec was checked at submit; check again, so that no template
	// reaches text/template that could render without bound.
	if _, err := analyze(s); err != nil {
		r.err = fmt.Errorf("%s: %w: %w", field, ErrTemplate, err)
		return s
	}
	tmpl, err := template.New(field).Option("missingkey=error").Parse(s)
	if err != nil {
		r.err = fmt.Errorf("%s: %w: %w", field, ErrTemplate, err)
		return s
	}
	data := map[string]any{"Tasks": r.tasks}
	if r.revision != "" {
		data["Revision"] = r.revision
	}
	if tr := r.trigger; tr != nil {
		data["Branch"] = tr.GetBranch()
		data["Tag"] = tr.GetTag()
		data["Event"] = tr.GetEvent()
		pr := ""
		if tr.GetPullRequest() > 0 {
			pr = fmt.Sprint(tr.GetPullRequest())
		}
		data["PullRequest"] = pr
	}
	b := &capped{max: MaxRendered}
	if err := tmpl.Execute(b, data); err != nil {
		if errors.Is(err, errTooLong) {
			r.err = fmt.Errorf("%s: %w: renders to more than %d bytes", field, ErrTemplate, MaxRendered)
			return s
		}
		hint := ""
		if strings.Contains(err.Error(), "Revision") {
			hint = " (.Revision is the revision output of a needed build with a Git context, or, in build.push, of the build's own, or the commit a project's build is for)"
		} else if hintTrigger(err.Error()) {
			hint = " (.Branch, .Tag, .Event and .PullRequest exist only in a project's builds)"
		}
		r.err = fmt.Errorf("%s: %w: %w%s", field, ErrTemplate, err, hint)
		return s
	}
	return b.b.String()
}

func hintTrigger(msg string) bool {
	for _, f := range triggerFields {
		if strings.Contains(msg, f) {
			return true
		}
	}
	return false
}
