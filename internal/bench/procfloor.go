package bench

import (
	"context"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// procFloor measures how fast this machine starts and reaps `true` with
// nothing of Gantry running: 32 starters for d, each process with its
// output read through pipes in its own process group, as an agent starts a
// task's process. It reports the starts per second and the CPU each start
// took (the starter's and the process's own, user and system): at a rate
// r of exec tasks, r times that CPU is gone before any Gantry process
// does its part, which bounds what the exec figures can reach.
func procFloor(ctx context.Context, d time.Duration, res *Result) error {
	prog, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	self0, kids0 := cpuTime(syscall.RUSAGE_SELF), cpuTime(syscall.RUSAGE_CHILDREN)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	began := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c := exec.Command(prog)
				c.Stdout, c.Stderr = io.Discard, io.Discard
				c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := c.Run(); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	if err, ok := first.Load().(error); ok {
		return err
	}
	if n.Load() == 0 {
		return nil
	}
	rate := float64(n.Load()) / took.Seconds()
	per := float64(cpuTime(syscall.RUSAGE_SELF)-self0+cpuTime(syscall.RUSAGE_CHILDREN)-kids0) / float64(n.Load()) / 1e3
	res.FloorProcStartsPerS, res.FloorProcStartCPUUs = &rate, &per
	return nil
}

// cpuTime is the user and system CPU time of who (a getrusage target:
// this process, or its reaped children).
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
