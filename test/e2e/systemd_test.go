package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestSystemdUnits runs deploy/systemd as systemd would: a three-node
// cluster of gantry-coordinator@.service instances 1, 2 and 3 and one
// gantry-agent.service, each started from its unit's ExecStart with the
// unit's specifiers, Environment= and EnvironmentFile= expanded. The
// EnvironmentFiles and the TLS material are made as the units' comments
// tell an installer to. Fixed paths of the units (/etc/gantry,
// /var/lib/gantry*, /usr/local/bin/gantry) are moved under a temporary
// root; any other absolute path fails the test. Each coordinator gets a
// loopback address of its own (127.X.Y.1-3) so that the units' fixed
// ports are used as written. The cluster must answer an API call with the
// installed admin token only, and the agent must join and run a job.
func TestSystemdUnits(t *testing.T) {
	skipShort(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	coordUnit := parseUnit(t, filepath.Join(root, "deploy", "systemd", "gantry-coordinator@.service"))
	agentUnit := parseUnit(t, filepath.Join(root, "deploy", "systemd", "gantry-agent.service"))

	t.Run("verify", func(t *testing.T) {
		systemdAnalyzeVerify(t, coordUnit, "gantry-coordinator@1.service")
		systemdAnalyzeVerify(t, agentUnit, "gantry-agent.service")
	})

	fs := newUnitRoot(t)
	ips := freeLoopbackIPs(t, 3, 7420, 7421, 7422, 4222, 6222)
	tlsDir := fs.path("/etc/gantry/tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "tls", "ca", "create", "--dir", tlsDir)
	token := strings.TrimSpace(runCLI(t, "token", "generate"))
	fs.write(t, "/etc/gantry/admin-token", token+"\n", 0o600)
	runCLI(t, "secret", "keygen", fs.path("/etc/gantry/secret-keys"))

	var peers, natsURLs []string
	for i, ip := range ips {
		peers = append(peers, fmt.Sprintf("n%d=%s:7422", i+1, ip))
		natsURLs = append(natsURLs, "nats://"+ip+":4222")
	}
	caFile := filepath.Join(tlsDir, "ca.pem")
	var coords []*proc
	var grpcAddrs []string
	for i, ip := range ips {
		inst := strconv.Itoa(i + 1)
		id := "n" + inst
		runCLI(t, "tls", "cert", "create", "--server", id, "--ip", ip, "--dir", tlsDir)
		var routes []string
		for j, other := range ips {
			if j != i {
				routes = append(routes, "nats://"+other+":6222")
			}
		}
		fs.write(t, "/etc/gantry/coordinator-"+inst+".env", strings.Join([]string{
			"# written as the unit's comment describes",
			"GANTRY_NODE_ID=" + id,
			"GANTRY_RAFT_ADDR=" + ip + ":7422",
			"GANTRY_PEERS=" + strings.Join(peers, ","),
			"GANTRY_NATS_ROUTES=" + strings.Join(routes, ","),
			"GANTRY_LISTEN=" + ip,
		}, "\n")+"\n", 0o600)
		argv, env := coordUnit.command(t, fs, map[byte]string{'i': inst, 'I': inst})
		coords = append(coords, startUnitProc(t, "coordinator@"+inst, fs, argv, env))
		grpc, http := ip+":7420", ip+":7421"
		grpcAddrs = append(grpcAddrs, grpc)
		tlsCAs.Store(grpc, caFile)
		tlsCAs.Store(http, caFile)
		t.Cleanup(func() { tlsCAs.Delete(grpc); tlsCAs.Delete(http) })
	}

	// One leader, seen by every node, among the three voters the units
	// bootstrapped; and only the installed admin token opens the API (the
	// CLI's own token file holds the suite's token, which this cluster
	// has never seen).
	for i, addr := range grpcAddrs {
		waitFor(t, 90*time.Second, func() (bool, string) {
			if coords[i].exited() {
				t.Fatalf("%s exited: %v", coords[i].name, coords[i].err)
			}
			st := &gv1.ClusterStatusResponse{}
			if err := decodeJSON(gantry(t, addr, "--token", token, "-o", "json", "cluster"), st); err != nil {
				return false, err.Error()
			}
			voters := 0
			for _, n := range st.GetNodes() {
				if n.GetVoter() {
					voters++
				}
			}
			return st.GetLeaderId() != "" && voters == 3, fmt.Sprintf("leader %q, %d voters", st.GetLeaderId(), voters)
		})
	}
	for i, ip := range ips {
		waitReady(t, coords[i], ip+":7421", 90*time.Second)
	}
	if r := gantry(t, grpcAddrs[0], "cluster"); r.code == 0 || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("a token the cluster does not know: want Unauthenticated, got %s", r)
	}

	// The agent, named after the host (%H), with its own certificate.
	const host = "unit-host"
	runCLI(t, "tls", "cert", "create", "--agent", host, "--dir", tlsDir)
	fs.write(t, "/etc/gantry/agent.env", strings.Join([]string{
		"GANTRY_NATS=" + strings.Join(natsURLs, ","),
		"GANTRY_AGENT_ARGS=--label os=linux --label pool=systemd --slots 2",
	}, "\n")+"\n", 0o600)
	argv, env := agentUnit.command(t, fs, map[byte]string{'H': host})
	agent := startUnitProc(t, "agent", fs, argv, env)
	pipeline := writePipeline(t, `name: systemd
tasks:
  - name: greet
    labels: {pool: systemd}
    exec: {command: ["sh", "-c", "echo hello from $GANTRY_AGENT in $PWD"]}
`)
	sub := gantry(t, grpcAddrs[1], "--token", token, "submit", "-f", pipeline, "--wait")
	if sub.code != 0 {
		t.Fatalf("job on the unit's agent: %s", sub)
	}
	if agent.exited() {
		t.Fatalf("agent exited: %v", agent.err)
	}
	if !strings.Contains(sub.stdout, "hello from "+host+" in "+fs.path("/var/lib/gantry-agent")) {
		t.Errorf("the task did not run on %s in its state directory:\n%s", host, sub)
	}
	// The units give the coordinators the keyring (secrets can be sealed)
	// and the CA key (agents can enroll).
	if r := gantryStdin(t, grpcAddrs[0], "v", "--token", token, "secret", "set", "UNIT_SECRET"); r.code != 0 {
		t.Errorf("secret set on the units' cluster: %s", r)
	}
	if r := gantry(t, grpcAddrs[2], "--token", token, "agent-token", "create", "units"); r.code != 0 {
		t.Errorf("agent-token create on the units' cluster: %s", r)
	}
}

// unitRoot stands for / on a machine the units are installed on.
type unitRoot struct{ dir string }

func newUnitRoot(t *testing.T) unitRoot {
	t.Helper()
	return unitRoot{dir: t.TempDir()}
}

// path is where p, an absolute path of the units, lives in the test.
func (r unitRoot) path(p string) string { return filepath.Join(r.dir, p) }

func (r unitRoot) write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(r.path(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.path(p), []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// mapPath moves a path the units name into the test: the binary is the
// one the suite built, configuration and state go under the root. Any
// other absolute path is an error: a unit that starts naming one needs
// this test (and the installer's notes) to say where it comes from.
func (r unitRoot) mapPath(p string) (string, error) {
	switch {
	case p == "/usr/local/bin/gantry":
		return gantryBin, nil
	case p == "/etc/gantry" || strings.HasPrefix(p, "/etc/gantry/"),
		p == "/var/lib/gantry" || strings.HasPrefix(p, "/var/lib/gantry/"),
		p == "/var/lib/gantry-agent" || strings.HasPrefix(p, "/var/lib/gantry-agent/"):
		return r.path(p), nil
	}
	return "", fmt.Errorf("path %s is outside what the test maps", p)
}

// unit is a systemd unit file's [Service] section: each key's values in
// order (a key may repeat, as Environment= does).
type unit struct {
	path    string
	name    string
	service map[string][]string
}

// parseUnit reads a unit file as systemd does: sections, comments (# and
// ;), backslash line continuations, key=value.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{path: path, name: filepath.Base(path), service: map[string][]string{}}
	section := ""
	var cont strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if cont.Len() > 0 && line != "" && (line[0] == '#' || line[0] == ';') {
			continue // comments may sit between continued lines
		}
		if strings.HasSuffix(line, `\`) {
			cont.WriteString(strings.TrimSuffix(line, `\`))
			cont.WriteByte(' ')
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: not key=value: %q", path, n, line)
		}
		if section == "Service" {
			k = strings.TrimSpace(k)
			u.service[k] = append(u.service[k], strings.TrimSpace(v))
		}
	}
	if cont.Len() > 0 {
		t.Fatalf("%s: ends inside a continued line", path)
	}
	if len(u.service["ExecStart"]) != 1 {
		t.Fatalf("%s: want one ExecStart=, have %d", path, len(u.service["ExecStart"]))
	}
	return u
}

// command is the argv and environment systemd would start the unit's
// ExecStart with, given the specifiers' values, with paths mapped under
// the test root. It also creates the unit's StateDirectory and checks
// that the directories the process writes lie in its ReadWritePaths
// (ProtectSystem=strict makes everything else read-only).
func (u unit) command(t *testing.T, fs unitRoot, spec map[byte]string) ([]string, []string) {
	t.Helper()
	expand := func(s string) string {
		t.Helper()
		out, err := expandSpecifiers(s, spec)
		if err != nil {
			t.Fatalf("%s: %v", u.name, err)
		}
		return out
	}
	env := map[string]string{}
	for _, line := range u.service["Environment"] {
		words, err := splitUnitWords(expand(line))
		if err != nil {
			t.Fatalf("%s: Environment=%s: %v", u.name, line, err)
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				t.Fatalf("%s: Environment=%s: %q is not NAME=VALUE", u.name, line, w)
			}
			env[k] = v
		}
	}
	// Files override Environment=, in order; "-" means optional.
	for _, f := range u.service["EnvironmentFile"] {
		f = expand(f)
		optional := strings.HasPrefix(f, "-")
		p, err := fs.mapPath(strings.TrimPrefix(f, "-"))
		if err != nil {
			t.Fatalf("%s: EnvironmentFile=: %v", u.name, err)
		}
		vars, err := readEnvFile(p)
		if os.IsNotExist(err) && optional {
			continue
		}
		if err != nil {
			t.Fatalf("%s: EnvironmentFile=%s: %v", u.name, f, err)
		}
		for k, v := range vars {
			env[k] = v
		}
	}
	argv, err := execArgs(expand(u.service["ExecStart"][0]), env)
	if err != nil {
		t.Fatalf("%s: ExecStart=: %v", u.name, err)
	}
	for i, a := range argv {
		name, val, isFlag := strings.Cut(a, "=")
		switch {
		case strings.HasPrefix(a, "/"):
			if argv[i], err = fs.mapPath(a); err != nil {
				t.Fatalf("%s: ExecStart= argument %d: %v", u.name, i, err)
			}
		case isFlag && strings.HasPrefix(name, "-") && strings.HasPrefix(val, "/"):
			if val, err = fs.mapPath(val); err != nil {
				t.Fatalf("%s: ExecStart= argument %d: %v", u.name, i, err)
			}
			argv[i] = name + "=" + val
		}
	}
	if argv[0] != gantryBin {
		t.Fatalf("%s: ExecStart= runs %s, not /usr/local/bin/gantry", u.name, argv[0])
	}

	// StateDirectory=NAME is /var/lib/NAME, made by systemd with
	// StateDirectoryMode; whatever the process writes must be in
	// ReadWritePaths.
	mode := os.FileMode(0o755)
	if m := u.service["StateDirectoryMode"]; len(m) > 0 {
		n, err := strconv.ParseUint(m[len(m)-1], 8, 32)
		if err != nil {
			t.Fatalf("%s: StateDirectoryMode=%s: %v", u.name, m[len(m)-1], err)
		}
		mode = os.FileMode(n)
	}
	for _, d := range u.service["StateDirectory"] {
		for _, name := range strings.Fields(expand(d)) {
			p, err := fs.mapPath("/var/lib/" + name)
			if err != nil {
				t.Fatalf("%s: StateDirectory=%s: %v", u.name, name, err)
			}
			if err := os.MkdirAll(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	var writable []string
	for _, l := range u.service["ReadWritePaths"] {
		for _, p := range strings.Fields(expand(l)) {
			p, err := fs.mapPath(strings.TrimPrefix(p, "-"))
			if err != nil {
				t.Fatalf("%s: ReadWritePaths=: %v", u.name, err)
			}
			writable = append(writable, p)
		}
	}
	for _, flag := range []string{"--data-dir", "--work-dir"} {
		dir, ok := flagValue(argv, flag)
		if !ok {
			continue
		}
		in := false
		for _, w := range writable {
			if dir == w || strings.HasPrefix(dir, w+"/") {
				in = true
			}
		}
		if !in {
			t.Errorf("%s: %s %s is not under ReadWritePaths %v (read-only under ProtectSystem=strict)", u.name, flag, dir, writable)
		}
	}

	// A system service's environment: systemd's PATH, what User= sets,
	// and the unit's variables.
	if len(u.service["StateDirectory"]) == 0 {
		t.Fatalf("%s: no StateDirectory=", u.name)
	}
	home := fs.path("/var/lib/" + strings.Fields(expand(u.service["StateDirectory"][0]))[0])
	out := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home, "LANG=C.UTF-8",
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return argv, out
}

// flagValue is the value of --flag VALUE or --flag=VALUE in argv.
func flagValue(argv []string, flag string) (string, bool) {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// expandSpecifiers replaces systemd's % specifiers the units use; any
// other one is an error, so a unit that starts using one is noticed.
func expandSpecifiers(s string, spec map[byte]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%q ends in %%", s)
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := spec[s[i]]
		if !ok {
			return "", fmt.Errorf("specifier %%%c in %q has no value in this test", s[i], s)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// splitUnitWords splits a value into words as systemd does: whitespace
// separates, double and single quotes group, a backslash escapes the next
// character.
func splitUnitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("%q ends in a backslash", s)
			}
			i++
			w.WriteRune(rs[i])
			inWord = true
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				w.WriteRune(c)
			}
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case unicode.IsSpace(c):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// execArgs turns an ExecStart= value into argv: a word that is exactly
// $NAME becomes the variable's value split at whitespace (zero or more
// arguments), ${NAME} anywhere in a word is replaced by the value as is
// (one argument, empty if unset).
func execArgs(line string, env map[string]string) ([]string, error) {
	line = strings.TrimLeft(line, "-@:+!") // prefixes that change how systemd runs it
	words, err := splitUnitWords(line)
	if err != nil {
		return nil, err
	}
	var argv []string
	for _, w := range words {
		if name, ok := strings.CutPrefix(w, "$"); ok && isEnvName(name) {
			argv = append(argv, strings.Fields(env[name])...)
			continue
		}
		var b strings.Builder
		for {
			i := strings.Index(w, "${")
			if i < 0 {
				b.WriteString(w)
				break
			}
			j := strings.IndexByte(w[i:], '}')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ${ in %q", w)
			}
			b.WriteString(w[:i])
			b.WriteString(env[w[i+2:i+j]])
			w = w[i+j+1:]
		}
		argv = append(argv, b.String())
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return argv, nil
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// readEnvFile reads an EnvironmentFile: NAME=VALUE lines, comments, a
// value optionally quoted.
func readEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isEnvName(strings.TrimSpace(k)) {
			return nil, fmt.Errorf("line %d: not NAME=VALUE: %q", n+1, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[strings.TrimSpace(k)] = v
	}
	return out, nil
}

// freeLoopbackIPs picks n addresses 127.X.Y.1 to .n on which every one of
// ports can be bound now (nothing listens there, or on a wildcard address
// with that port).
func freeLoopbackIPs(t *testing.T, n int, ports ...int) []string {
	t.Helper()
	for range 20 {
		base := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), 1+rand.IntN(250))
		var ips []string
		ok := true
		for i := 1; i <= n && ok; i++ {
			ip := base + strconv.Itoa(i)
			for _, p := range ports {
				l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
			ips = append(ips, ip)
		}
		if ok {
			return ips
		}
	}
	t.Fatalf("no loopback addresses with ports %v free", ports)
	return nil
}

// runCLI runs a gantry command that needs no coordinator and returns its
// standard output.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(gantryBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gantry %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// startUnitProc starts argv with exactly env, in the root directory, as
// systemd starts a service; stopped and its output shown like startProc's.
func startUnitProc(t *testing.T, name string, fs unitRoot, argv, env []string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = fs.dir
	return runProc(t, name, cmd, 30*time.Second)
}

// systemdAnalyzeVerify runs `systemd-analyze verify` on the unit (the
// instance name for a template), with ExecStart's binary pointed at one
// that exists; systemd must find nothing to say. Skipped where systemd is
// not installed.
func systemdAnalyzeVerify(t *testing.T, u unit, instance string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	data, err := os.ReadFile(u.path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.ReplaceAll(string(data), "/usr/local/bin/gantry", gantryBin)
	if err := os.WriteFile(filepath.Join(dir, u.name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", filepath.Join(dir, instance))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", instance, err, out)
	}
}
