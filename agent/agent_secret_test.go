package agent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

var testSecrets = map[string]string{
	"token":    "ghp_S3cr3tT0kenValue123",
	"password": "p@ss w0rd/with+chars&=?",
	"quoted":   `quote"back\slash-value`,
	"key": `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBxk3Vn0m3YgkAExampleExampleExampleExampleAAAAAJgAAAAAAAAAAA
-----END OPENSSH PRIVATE KEY-----
`,
}

// secretForms are the ways the task prints a secret.
func secretForms(s string) []string {
	b := []byte(s)
	js, _ := json.Marshal(s)
	forms := []string{
		s, strings.TrimSpace(s),
		base64.StdEncoding.EncodeToString(b), base64.URLEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		url.QueryEscape(s), url.PathEscape(s), string(js),
	}
	for _, user := range []string{"", "u", "us", "x-access-token"} {
		forms = append(forms, "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+s)))
	}
	return forms
}

// secretLeaks returns what of secret s (its value, lines, encodings) text holds.
func secretLeaks(text, s string) []string {
	var found []string
	check := func(what, v string) {
		if len(v) >= 4 && strings.Contains(text, v) {
			found = append(found, what+" "+v)
		}
	}
	check("value", s)
	for _, l := range strings.Split(s, "\n") {
		check("line", strings.TrimSpace(l))
	}
	b := []byte(s)
	for name, v := range map[string]string{
		"std": base64.StdEncoding.EncodeToString(b), "url": base64.URLEncoding.EncodeToString(b),
		"raw": base64.RawStdEncoding.EncodeToString(b), "rawurl": base64.RawURLEncoding.EncodeToString(b),
	} {
		check(name, v)
	}
	if e := url.QueryEscape(s); e != s {
		check("query", e)
	}
	if e := url.PathEscape(s); e != s {
		check("path", e)
	}
	for _, user := range []string{"", "u", "us", "x-access-token"} {
		check("basic", base64.StdEncoding.EncodeToString([]byte(user+":"+s)))
	}
	return found
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestSecretsNeverPublished runs a real exec task that prints every secret
// of its assignment in every form, to stdout and stderr, whole and split
// across writes far enough apart that the first half is flushed on its
// own, and checks the published log, the report and the agent's logs hold
// none of them.
func TestSecretsNeverPublished(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.start(nil)
	var script strings.Builder
	script.WriteString("echo before\n")
	secrets := map[string][]byte{}
	for name, v := range testSecrets {
		secrets[name] = []byte(v)
		for i, form := range secretForms(v) {
			fd := ""
			if i%2 == 1 {
				fd = " >&2"
			}
			fmt.Fprintf(&script, "printf '%%s\\n' %s%s\n", shellQuote(form), fd)
		}
		half := len(v) / 2
		fmt.Fprintf(&script, "printf '%%s' %s; sleep 0.3; printf '%%s\\n' %s\n", shellQuote(v[:half]), shellQuote(v[half:]))
		enc := base64.StdEncoding.EncodeToString([]byte(v))
		fmt.Fprintf(&script, "printf '%%s' %s >&2; sleep 0.3; printf '%%s\\n' %s >&2\n", shellQuote(enc[:7]), shellQuote(enc[7:]))
	}
	// From the environment, through the task's own tools.
	script.WriteString(`printf '%s\n' "$TOKEN"; printf '%s' "$TOKEN" | base64; printf '%s\n' "$KEY"; echo "x-access-token:$TOKEN" | base64` + "\n")
	script.WriteString("echo after\n")
	as := execTask("j1", "print", &gv1.ExecSpec{Shell: script.String(), SecretEnv: map[string]string{"TOKEN": "token", "KEY": "key"}})
	as.Secrets = secrets
	if r := f.assign(as); !r.Accepted {
		t.Fatalf("refused: %s", r.Reason)
	}
	rep := f.report("print")
	if !rep.Success {
		t.Fatalf("task failed: %s", rep.Error)
	}
	chunks := f.logChunks("j1", "print")
	text := logText(chunks)
	if !strings.Contains(text, "before\n") || !strings.Contains(text, "after\n") || strings.Count(text, "***") < 40 {
		t.Fatalf("log is not what the task printed, masked:\n%s", text)
	}
	// Each stream on its own too: a value split across two writes of a
	// stream may have the other stream's output in between.
	streams := map[gv1.LogStream]string{}
	for _, c := range chunks {
		streams[c.Stream] += string(c.Data)
	}
	for name, v := range testSecrets {
		for _, text := range append([]string{text}, streams[gv1.LogStream_LOG_STREAM_STDOUT], streams[gv1.LogStream_LOG_STREAM_STDERR]) {
			if l := secretLeaks(text, v); len(l) > 0 {
				t.Errorf("published log leaks secret %s: %v", name, l)
			}
		}
	}

	// An error quoting a secret is masked in the report and the log.
	as = execTask("j1", "fail", &gv1.ExecSpec{Command: []string{"true"}, Dir: "/nonexistent/" + testSecrets["token"]})
	as.Secrets = secrets
	if r := f.assign(as); !r.Accepted {
		t.Fatalf("refused: %s", r.Reason)
	}
	rep = f.report("fail")
	if rep.Success || !strings.Contains(rep.Error, "/nonexistent/***") {
		t.Fatalf("report error %q, want the masked path", rep.Error)
	}
	if text := logText(f.logChunks("j1", "fail")); !strings.Contains(text, "/nonexistent/***") {
		t.Errorf("log %q, want the masked path", text)
	}

	var logs strings.Builder
	for _, e := range f.logs.All() {
		js, _ := json.Marshal(e.ContextMap())
		fmt.Fprintf(&logs, "%s %s\n", e.Message, js)
	}
	for name, v := range testSecrets {
		if l := secretLeaks(logs.String(), v); len(l) > 0 {
			t.Errorf("agent logs leak secret %s: %v", name, l)
		}
	}
}

func TestMissingSecretFailsTheJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.start(nil)
	as := execTask("j2", "t", &gv1.ExecSpec{Command: []string{"true"}, SecretEnv: map[string]string{"TOKEN": "gh-token"}})
	if r := f.assign(as); !r.Accepted {
		t.Fatalf("refused: %s", r.Reason)
	}
	rep := f.report("t")
	if rep.Success || rep.Failure != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(rep.Error, `secret_env[TOKEN]: secret "gh-token" is not in the assignment`) {
		t.Fatalf("report: success %v class %s error %q", rep.Success, rep.Failure, rep.Error)
	}
}

// TestTaskEnvironment checks an exec task gets --pass-env variables and
// not the rest of the agent's environment. (Not parallel: it sets the
// test process's environment.)
func TestTaskEnvironment(t *testing.T) {
	t.Setenv("KUBECONFIG", "/etc/agent/kubeconfig")
	t.Setenv("GANTRY_TEST_PROXY", "http://proxy.invalid")
	f := newFixture(t)
	f.start(func(c *Config) { c.PassEnv = []string{"GANTRY_TEST_PROXY"} })
	if r := f.assign(execTask("j5", "env", &gv1.ExecSpec{Command: []string{"env"}})); !r.Accepted {
		t.Fatalf("refused: %s", r.Reason)
	}
	if rep := f.report("env"); !rep.Success {
		t.Fatalf("task failed: %s", rep.Error)
	}
	text := logText(f.logChunks("j5", "env"))
	for _, want := range []string{"GANTRY_TEST_PROXY=http://proxy.invalid\n", "GANTRY_JOB_ID=j5\n", "GANTRY_TASK=env\n", "PATH="} {
		if !strings.Contains(text, want) {
			t.Errorf("environment lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "KUBECONFIG") {
		t.Errorf("KUBECONFIG leaked into the task:\n%s", text)
	}
}
