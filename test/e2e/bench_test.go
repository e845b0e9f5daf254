package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchLocalShort runs a short `gantry bench --local 3` as a user would
// and checks that every figure of the JSON document is there.
func TestBenchLocalShort(t *testing.T) {
	skipShort(t)
	t.Parallel()
	r := gantry(t, "127.0.0.1:1", "bench", "--local", "3", "--duration", "1s", "--rate", "50",
		"--sim-agents", "20", "-o", "json")
	if r.code != 0 {
		t.Fatalf("bench failed: %s", r)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("bench -o json is not JSON: %v\n%s", err, r)
	}
	for _, k := range []string{
		"throughput_tasks_per_s", "dispatch_p50_ms", "dispatch_p99_ms", "finish_p99_ms", "failover_ms",
		"lost_agent_redispatch_ms", "floor_raft_commit_p50_ms", "floor_raft_commit_p99_ms", "floor_nats_rtt_p50_ms",
		"floor_msg_tasks_per_s", "floor_msg_cpu_us",
	} {
		v, ok := doc[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number\n%s", k, doc[k], r.stdout)
		}
	}
	if n, _ := doc["sim_agents"].(float64); n != 20 {
		t.Errorf("sim_agents = %v, want 20", doc["sim_agents"])
	}
}

// TestBenchLocalAgentsAndRetained runs exec on three local coordinators
// with a real agent process, and a small retained run: its figures are
// there, and the cluster served again after the leader's restart.
func TestBenchLocalAgentsAndRetained(t *testing.T) {
	skipShort(t)
	t.Parallel()
	r := gantry(t, "127.0.0.1:1", "bench", "--local", "3", "--local-agents", "1", "--agent-slots", "4",
		"--scenarios", "exec,retained", "--retained", "2000", "--duration", "1s", "--sim-agents", "20", "-o", "json")
	if r.code != 0 {
		t.Fatalf("bench failed: %s", r)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("bench -o json is not JSON: %v\n%s", err, r)
	}
	if notes, ok := doc["notes"]; ok {
		t.Errorf("notes: %v", notes)
	}
	for _, k := range []string{"exec_tasks_per_s", "exec_start_p50_ms", "retained_1m_rss_mb", "snapshot_1m_s", "snapshot_1m_mb", "restart_1m_s", "retained_max_gap_ms"} {
		if v, ok := doc[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number\n%s", k, doc[k], r.stdout)
		}
	}
	if n, _ := doc["retained_tasks"].(float64); n < 2000 {
		t.Errorf("retained_tasks = %v, want at least 2000 (and the probe's)", doc["retained_tasks"])
	}
}

// TestBenchExecOnDev runs `gantry bench --scenarios exec` against gantry
// dev: real `true` processes on its agent, every acknowledged job finished
// before the figure is given.
func TestBenchExecOnDev(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	r := gantry(t, d.grpcAddr, "bench", "--scenarios", "floor,exec", "--duration", "1s", "-o", "json")
	if r.code != 0 {
		t.Fatalf("bench failed: %s", r)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("bench -o json is not JSON: %v\n%s", err, r)
	}
	for _, k := range []string{"exec_tasks_per_s", "exec_accepted_per_s", "exec_start_p50_ms", "exec_start_p99_ms", "floor_proc_starts_per_s", "floor_proc_start_cpu_us"} {
		if v, ok := doc[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number\n%s", k, doc[k], r.stdout)
		}
	}
	if _, ok := doc["exec_backlog"].(float64); !ok {
		t.Errorf("exec_backlog missing\n%s", r.stdout)
	}
	// Every job it acknowledged has finished, and succeeded.
	jobs := mustGantry(t, d.grpcAddr, "-o", "json", "jobs", "--state", "failed").stdout
	if strings.Contains(jobs, "bench-exec") {
		t.Errorf("bench-exec jobs failed:\n%s", jobs)
	}
}

// TestVersion: `gantry version` names this build and each coordinator's,
// and the highest Raft command type it knows.
func TestVersion(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	var v struct {
		Version    string            `json:"version"`
		MaxCommand int               `json:"max_command"`
		Nodes      map[string]string `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(mustGantry(t, d.grpcAddr, "version", "-o", "json").stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version == "" || v.MaxCommand < 38 || v.Nodes["dev"] != v.Version {
		t.Errorf("version %+v: want this build's version, the command types it knows, and node dev on the same build", v)
	}
}
