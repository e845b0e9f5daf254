package buildkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// benchDockerfile has an expensive dependency step (hashing 256 MiB stands
// in for installing dependencies) keyed by deps.txt, and a cheap step keyed
// by src.txt, like most application Dockerfiles.
const benchDockerfile = `FROM scratch
COPY busybox /bin/busybox
COPY deps.txt /deps.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /deps && /bin/busybox dd if=/dev/zero bs=1M count=256 2>/dev/null | /bin/busybox sha256sum > /deps/sum"]
COPY src.txt /src.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cat /src.txt /deps/sum > /app"]
`

// BenchmarkBuildColdVsWarm measures what cache affinity buys: a new commit
// (src.txt changes) built by an agent whose BuildKit built this repository
// and Dockerfile before (warm: only the last step runs) against one that
// never did (cold: every step runs, simulated by changing deps.txt too).
//
//	eval "$(scripts/testenv.sh up buildkit registry)"
//	go test -run '^$' -bench ColdVsWarm -benchtime 5x ./agent/buildkit/
func BenchmarkBuildColdVsWarm(b *testing.B) {
	env := needEnv(b)
	e := newExecutor(b, env.addr)
	dir := b.TempDir()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		b.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	write("busybox", string(bb))
	write("Dockerfile", benchDockerfile)
	spec := &gv1.BuildSpec{Context: &gv1.BuildContext{Dir: dir}}
	build := func(b *testing.B) {
		var log buffer
		if res := e.Build(context.Background(), BuildRequest{Spec: spec, Name: "bench"}, &log); !res.Success() {
			b.Fatalf("build: %v\n%s", res.Err, log.String())
		}
	}
	deps := fmt.Sprintf("deps %d\n", time.Now().UnixNano())
	write("deps.txt", deps)
	write("src.txt", "src 0\n")
	build(b) // warm the cache for the warm case
	var cold, warm time.Duration
	b.Run("cold", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			write("deps.txt", fmt.Sprintf("cold %d %d\n", time.Now().UnixNano(), i))
			write("src.txt", fmt.Sprintf("src cold %d\n", i))
			b.StartTimer()
			build(b)
		}
		cold = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("warm", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			write("deps.txt", deps)
			write("src.txt", fmt.Sprintf("src warm %d %d\n", time.Now().UnixNano(), i))
			b.StartTimer()
			build(b)
		}
		warm = b.Elapsed() / time.Duration(b.N)
	})
	if cold > 0 && warm > 0 {
		fmt.Printf("build of a new commit: cold agent %s, warm agent %s (%.1fx faster warm)\n",
			cold.Round(time.Millisecond), warm.Round(time.Millisecond), float64(cold)/float64(warm))
	}
}
