package buildkey

import (
	"testing"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestFor(t *testing.T) {
	t.Parallel()
	git := func(url, rev, df string) *gv1.BuildSpec {
		return &gv1.BuildSpec{Dockerfile: df, Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url, Revision: rev}}}
	}
	for _, tc := range []struct {
		name string
		spec *gv1.BuildSpec
		want string
	}{
		{"default dockerfile", git("file:///r.git", "main", ""), "git:file:///r.git#Dockerfile"},
		{"revision does not matter", git("file:///r.git", "v2", "./Dockerfile"), "git:file:///r.git#Dockerfile"},
		{"other dockerfile", git("file:///r.git", "", "ci/Dockerfile.test"), "git:file:///r.git#ci/Dockerfile.test"},
		{"dir", &gv1.BuildSpec{Context: &gv1.BuildContext{Dir: "/src/app/"}}, "dir:/src/app#Dockerfile"},
		{"no context", &gv1.BuildSpec{}, ""},
		{"nil", nil, ""},
	} {
		if got := For(tc.spec); got != tc.want {
			t.Errorf("%s: For = %q, want %q", tc.name, got, tc.want)
		}
	}
}
