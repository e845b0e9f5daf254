package api

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestFindRevision(t *testing.T) {
	a := &gv1.App{Spec: &gv1.AppSpec{Name: "web"}, History: []*gv1.DeployRecord{
		{Id: 1, Revision: "aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111"},
		{Id: 2, Revision: "aaaa2222aaaa2222aaaa2222aaaa2222aaaa2222"},
		{Id: 3, Revision: "bbbb3333bbbb3333bbbb3333bbbb3333bbbb3333"},
		{Id: 4},
	}}
	for _, tt := range []struct {
		in   string
		want string
		code codes.Code
	}{
		{"2", "aaaa2222aaaa2222aaaa2222aaaa2222aaaa2222", codes.OK},
		{"bbbb", "bbbb3333bbbb3333bbbb3333bbbb3333bbbb3333", codes.OK},
		{"aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111", "aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111", codes.OK},
		{"aaaa", "", codes.InvalidArgument},
		{"cccc", "", codes.NotFound},
		{"9", "", codes.NotFound},
		{"4", "", codes.FailedPrecondition},
		{"", "", codes.InvalidArgument},
	} {
		got, err := findRevision(a, tt.in)
		if status.Code(err) != tt.code || got != tt.want {
			t.Errorf("findRevision(%q) = %q, %v; want %q, %s", tt.in, got, err, tt.want, tt.code)
		}
	}
}

func TestValidateApp(t *testing.T) {
	ok := func() *gv1.AppSpec {
		return &gv1.AppSpec{Name: "web", Repo: "https://git.example/shop.git", Path: "k8s", Cluster: "local", Namespace: "shop"}
	}
	if err := validateApp(ok()); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	for field, mutate := range map[string]func(*gv1.AppSpec){
		"spec.name":           func(s *gv1.AppSpec) { s.Name = "web app" },
		"spec.repo":           func(s *gv1.AppSpec) { s.Repo = "" },
		"spec.cluster":        func(s *gv1.AppSpec) { s.Cluster = "" },
		"spec.namespace":      func(s *gv1.AppSpec) { s.Namespace = "Shop" },
		"spec.path":           func(s *gv1.AppSpec) { s.Path = "../etc" },
		"spec.poll_interval":  func(s *gv1.AppSpec) { s.PollInterval = durationpb.New(1) },
		"spec.health_timeout": func(s *gv1.AppSpec) { s.HealthTimeout = durationpb.New(-1) },
	} {
		s := ok()
		mutate(s)
		err := validateApp(s)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), field) {
			t.Errorf("%s: got %v, want InvalidArgument naming the field", field, err)
		}
	}
}
