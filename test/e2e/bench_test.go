package e2e

import (
	"encoding/json"
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
