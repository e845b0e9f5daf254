// Package poll waits for a condition by asking it again until it holds or
// a deadline passes: how tests and harnesses wait, instead of sleeping for
// a guessed while.
package poll

import "time"

// Interval is how often Until asks.
const Interval = 10 * time.Millisecond

// Until asks cond every Interval until it holds (true) or timeout passed
// (false). cond is asked once more at the deadline.
func Until(timeout time.Duration, cond func() bool) bool {
	return Every(Interval, timeout, cond)
}

// Every is Until asking every interval: a benchmark that times how soon a
// condition holds asks more often.
func Every(interval, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(interval)
	}
	return true
}
