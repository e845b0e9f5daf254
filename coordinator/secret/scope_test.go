package secret

import "testing"

func TestScope(t *testing.T) {
	for _, s := range []string{"", "app:web", "job:release", "label:pool=prod"} {
		sc, err := ParseScope(s)
		if err != nil || sc.String() != s {
			t.Errorf("ParseScope(%q) = %v, %v", s, sc, err)
		}
	}
	for _, s := range []string{"app", "app:", "app:../x", "team:a", "label:pool", "label:=x"} {
		if _, err := ParseScope(s); err == nil {
			t.Errorf("ParseScope(%q) accepted", s)
		}
	}
	app, _ := ParseScope("app:web")
	if app.Allows("web", "j", nil) != nil || app.Allows("", "web", nil) == nil {
		t.Error("app scope")
	}
	job, _ := ParseScope("job:release")
	if job.Allows("", "release", nil) != nil || job.Allows("", "other", nil) == nil {
		t.Error("job scope")
	}
	lbl, _ := ParseScope("label:pool=prod")
	if lbl.Allows("", "", map[string]string{"pool": "prod"}) != nil || lbl.Allows("", "", map[string]string{"pool": "dev"}) == nil || lbl.Allows("", "", nil) == nil {
		t.Error("label scope")
	}
}
