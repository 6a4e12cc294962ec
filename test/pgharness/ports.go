package pgharness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// FreePort returns a port on 127.0.0.1 that nobody listens on now and that
// this test binary has not handed out before.
//
// Ports come from below the kernel's ephemeral range when there is room
// there: outgoing connections take their source ports from that range, so a
// port the kernel picked for listen(":0") and that was released could be
// taken by any connect() before the server binds it (seen under load, as
// "address already in use"). Below the range only another listener can take
// it. Start still retries PostgreSQL on a new port if that happens.
func FreePort() (int, error) {
	if lo, hi := belowEphemeral(); hi-lo >= 1000 {
		for range 200 {
			p := lo + rand.IntN(hi-lo)
			if !handedOut.claim(p) {
				continue
			}
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
				if err := l.Close(); err != nil {
					return 0, fmt.Errorf("pick a free port: %w", err)
				}
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	handedOut.claim(port)
	return port, nil
}

// belowEphemeral is the range of ports FreePort picks from: above the
// well-known and registered ports most services use, below the ephemeral
// range (empty if that cannot be read). The kernel's range is read once.
var belowEphemeral = sync.OnceValues(readBelowEphemeral)

func readBelowEphemeral() (lo, hi int) {
	const floor = 15000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start <= floor {
		return 0, 0
	}
	return floor, start
}

// portSet remembers the ports handed out in this process.
type portSet struct {
	mu    sync.Mutex
	ports map[int]bool
}

// handedOut keeps two tests of one binary from getting the same port.
var handedOut = &portSet{ports: map[int]bool{}}

// claim marks p handed out; false if it was already.
func (s *portSet) claim(p int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports[p] {
		return false
	}
	s.ports[p] = true
	return true
}
