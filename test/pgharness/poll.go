package pgharness

import (
	"fmt"
	"time"
)

// poll calls f until it returns nil or timeout passes, backing off from 5 ms
// to 100 ms between calls. It returns f's last error, wrapped, on timeout.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %v: %w", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}
