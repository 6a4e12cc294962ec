package pgharness

import (
	"fmt"
	"net"
	"testing"
)

// TestFreePort: ports are free, never handed out twice by one process, and
// below the ephemeral range where the kernel leaves room there.
func TestFreePort(t *testing.T) {
	lo, hi := belowEphemeral()
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if hi-lo >= 1000 && (p < lo || p >= hi) {
			t.Fatalf("port %d outside [%d, %d), below the ephemeral range", p, lo, hi)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
