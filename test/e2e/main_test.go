// Package e2e runs the gantry binary as separate processes — a one-process
// dev setup and a three-coordinator cluster with an agent — and drives them
// with the gantry client commands, as a user would.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/internal/pki"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// gantryBin is the binary built once by TestMain.
var gantryBin string

// adminToken is the admin token of every dev process and cluster of the
// suite (TestMain writes it where the CLI finds it).
var adminToken string

// tlsCAs maps the gRPC and HTTP addresses of coordinators that serve TLS to
// the CA file to trust: the CLI gets --tls-ca, HTTP calls use https.
var tlsCAs sync.Map

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "gantry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	gantryBin = filepath.Join(dir, "gantry")
	// Every process this suite starts finds its token in a config dir of
	// its own, never the user's: gantry dev bootstraps with the token there
	// (a fresh data dir reuses it) and the CLI sends it.
	cfgHome := filepath.Join(dir, "config")
	_, adminToken, _ = api.NewToken()
	if err := os.MkdirAll(filepath.Join(cfgHome, "gantry"), 0o700); err == nil {
		err = os.WriteFile(filepath.Join(cfgHome, "gantry", "token"), []byte(adminToken+"\n"), 0o600)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: token:", err)
		return 1
	}
	os.Setenv("XDG_CONFIG_HOME", cfgHome)
	os.Unsetenv("GANTRY_TOKEN")
	build := exec.Command("go", "build", "-o", gantryBin, "./cmd/gantry")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/gantry: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level end-to-end test; skipped with -short")
	}
}

// readAddrs waits for the addresses a gantry server process writes to
// path (--addr-file) once it listens on the ports it chose.
func readAddrs(t testing.TB, exited func() bool, path string) coordinator.Addrs {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		a, err := coordinator.ReadAddrs(path)
		if err == nil {
			return a
		}
		if exited() {
			t.Fatalf("server exited before it wrote %s", path)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no addresses after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls cond until it reports true, failing the test after timeout
// with the last detail cond gave.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %s", timeout, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdsFor polls cond for the whole of d, failing the test as soon as it
// reports false.
func holdsFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok, detail := cond(); !ok {
			t.Fatalf("condition stopped holding: %s", detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// proc is a gantry server process whose output goes to a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // from Wait, valid once done is closed
}

// startProc starts the gantry binary with args. The process is stopped
// (SIGTERM, then SIGKILL) when the test ends, and the tail of its output is
// logged if the test failed.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startBinary(t, gantryBin, name, args...)
}

// startBinary is startProc with another gantry binary.
func startBinary(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=")
	return runProc(t, name, cmd, 20*time.Second)
}

// runProc starts cmd with its output in a log file; when the test ends it
// is stopped (SIGTERM, then SIGKILL after grace), and the tail of its
// output is logged if the test failed.
func runProc(t *testing.T, name string, cmd *exec.Cmd, grace time.Duration) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open %s log: %v", name, err)
	}
	fmt.Fprintf(f, "=== %s\n", strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	// Cleanups run last-registered first: stop, then dump the output.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last lines of %s (%s):\n%s", name, logPath, tail(logPath, 80))
		}
	})
	t.Cleanup(func() { p.stop(t, grace) })
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the process's exit code; -1 while it runs or after a signal.
func (p *proc) exitCode() int {
	if !p.exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It reports whether the process exited on its own.
func (p *proc) stop(t *testing.T, grace time.Duration) bool {
	t.Helper()
	if p.exited() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
	}
	t.Logf("%s did not exit within %s of SIGTERM; killing it", p.name, grace)
	_ = p.cmd.Process.Kill()
	<-p.done
	return false
}

// kill stops the process with SIGKILL, as a crash would.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if p.exited() {
		t.Fatalf("%s exited before it was killed: %v", p.name, p.err)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// result is the outcome of one client command.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("gantry %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// gantry runs a client command against the coordinator at addr.
func gantry(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return gantryStdin(t, addr, "", args...)
}

// gantryStdin is gantry with stdin.
func gantryStdin(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	full := append([]string{"--addr", addr}, args...)
	if ca, ok := tlsCAs.Load(strings.Split(addr, ",")[0]); ok {
		full = append([]string{"--tls-ca", ca.(string)}, full...)
	}
	cmd := exec.CommandContext(ctx, gantryBin, full...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	r := result{args: full, stdout: stdout.String(), stderr: stderr.String(), code: -1}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.code = 0
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run gantry %s: %v", strings.Join(full, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("gantry %s did not finish within 90s\n%s", strings.Join(full, " "), r)
	}
	return r
}

// mustGantry runs a client command that must succeed.
func mustGantry(t *testing.T, addr string, args ...string) result {
	t.Helper()
	r := gantry(t, addr, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	return r
}

// decodeJSON reads the protojson printed by `-o json` into m.
func decodeJSON(r result, m proto.Message) error {
	if r.code != 0 {
		return fmt.Errorf("%s", r)
	}
	if err := protojson.Unmarshal([]byte(r.stdout), m); err != nil {
		return fmt.Errorf("decode output of gantry %s: %v\n%s", strings.Join(r.args, " "), err, r.stdout)
	}
	return nil
}

func tryGetJob(t *testing.T, addr, id string) (*gv1.Job, error) {
	t.Helper()
	j := &gv1.Job{}
	return j, decodeJSON(gantry(t, addr, "-o", "json", "job", id), j)
}

func getJob(t *testing.T, addr, id string) *gv1.Job {
	t.Helper()
	j, err := tryGetJob(t, addr, id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func tryListJobs(t *testing.T, addr string) ([]*gv1.Job, error) {
	t.Helper()
	var resp gv1.ListJobsResponse
	err := decodeJSON(gantry(t, addr, "-o", "json", "jobs"), &resp)
	return resp.Jobs, err
}

func listJobs(t *testing.T, addr string) []*gv1.Job {
	t.Helper()
	jobs, err := tryListJobs(t, addr)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func listAgents(t *testing.T, addr string) ([]*gv1.AgentStatus, error) {
	t.Helper()
	var resp gv1.ListAgentsResponse
	err := decodeJSON(gantry(t, addr, "-o", "json", "agents"), &resp)
	return resp.Agents, err
}

func clusterStatus(t *testing.T, addr string) (*gv1.ClusterStatusResponse, error) {
	t.Helper()
	resp := &gv1.ClusterStatusResponse{}
	return resp, decodeJSON(gantry(t, addr, "-o", "json", "cluster"), resp)
}

// task returns the task of j named name, failing the test if there is none.
func task(t *testing.T, j *gv1.Job, name string) *gv1.Task {
	t.Helper()
	for _, tk := range j.GetTasks() {
		if tk.GetName() == name {
			return tk
		}
	}
	t.Fatalf("job %s has no task %q", j.GetId(), name)
	return nil
}

// writePipeline writes a pipeline file into a fresh temporary directory.
func writePipeline(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// baseURL is the URL of the HTTP server at addr: https for a coordinator
// serving TLS.
func baseURL(addr string) string {
	if _, ok := tlsCAs.Load(addr); ok {
		return "https://" + addr
	}
	return "http://" + addr
}

// httpGet returns the status code and body of a GET, or an error.
func httpGet(url string) (int, string, error) {
	c := httpClient
	host := strings.TrimPrefix(url, "https://")
	if host != url {
		ca, ok := tlsCAs.Load(strings.SplitN(host, "/", 2)[0])
		if !ok {
			return 0, "", fmt.Errorf("no CA for %s", url)
		}
		cfg, err := pki.ClientTLS(ca.(string), "", "")
		if err != nil {
			return 0, "", err
		}
		c = &http.Client{Timeout: httpClient.Timeout, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), err
}

// waitReady waits for /readyz at the HTTP address to answer 200.
func waitReady(t *testing.T, p *proc, httpAddr string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, func() (bool, string) {
		if p.exited() {
			t.Fatalf("%s exited while starting: %v", p.name, p.err)
		}
		code, body, err := httpGet(baseURL(httpAddr) + "/readyz")
		if err != nil {
			return false, "readyz: " + err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("readyz: %d %s", code, strings.TrimSpace(body))
	})
}

// devNode is one `gantry dev` process and its addresses: port 0 until the
// first start, then the ports it bound, kept across restarts.
type devNode struct {
	dataDir, addrFile                      string
	grpcAddr, httpAddr, raftAddr, natsAddr string
	bound                                  bool
	proc                                   *proc
	starts                                 int
	// extra are more flags of gantry dev.
	extra []string
}

func newDevNode(t *testing.T) *devNode {
	t.Helper()
	dir := t.TempDir()
	const port0 = "127.0.0.1:0"
	return &devNode{
		dataDir:  filepath.Join(dir, "data"),
		addrFile: filepath.Join(dir, "addrs.json"),
		grpcAddr: port0, httpAddr: port0, raftAddr: port0, natsAddr: port0,
	}
}

// start starts (or restarts) the dev process and waits until it is ready.
func (d *devNode) start(t *testing.T) {
	t.Helper()
	d.launch(t)
	waitReady(t, d.proc, d.httpAddr, 60*time.Second)
}

// launch starts (or restarts) the dev process without waiting for it to
// be ready; the first start waits for the ports it chose.
func (d *devNode) launch(t *testing.T) {
	t.Helper()
	d.starts++
	d.proc = startProc(t, fmt.Sprintf("dev-%d", d.starts), append([]string{"dev",
		"--data-dir", d.dataDir,
		"--addr-file", d.addrFile,
		"--grpc-addr", d.grpcAddr,
		"--http-addr", d.httpAddr,
		"--raft-addr", d.raftAddr,
		"--nats-listen", d.natsAddr,
	}, d.extra...)...)
	if !d.bound {
		a := readAddrs(t, d.proc.exited, d.addrFile)
		d.grpcAddr, d.httpAddr, d.raftAddr, d.natsAddr = a.GRPC, a.HTTP, a.Raft, a.NATS
		d.bound = true
		// gantry dev serves its API with TLS (its own CA, in the data
		// dir) and its HTTP address in plain text on loopback.
		if a.CA != "" {
			tlsCAs.Store(d.grpcAddr, a.CA)
			grpcAddr := d.grpcAddr
			t.Cleanup(func() { tlsCAs.Delete(grpcAddr) })
		}
	}
}

// startDev starts a fresh dev process.
func startDev(t *testing.T) *devNode {
	t.Helper()
	d := newDevNode(t)
	d.start(t)
	return d
}

// lines splits output into lines, without the trailing empty one.
func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// hasLine reports whether out has a line equal to want.
func hasLine(out, want string) bool {
	for _, l := range lines(out) {
		if l == want {
			return true
		}
	}
	return false
}

// lineIndex is the index of the first line of out equal to want, or -1.
func lineIndex(out, want string) int {
	for i, l := range lines(out) {
		if l == want {
			return i
		}
	}
	return -1
}

// killGroup kills a process group a test task started, should it outlive
// the test.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitOutput waits until the process's output contains s.
func waitOutput(t *testing.T, p *proc, s string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, func() (bool, string) {
		data, err := os.ReadFile(p.logPath)
		if err != nil {
			return false, err.Error()
		}
		if p.exited() {
			t.Fatalf("%s exited: %v", p.name, p.err)
		}
		return strings.Contains(string(data), s), fmt.Sprintf("%s has not printed %q", p.name, s)
	})
}
