package local

import (
	"fmt"
	"strconv"
	"strings"

	"strata.dev/cli/process"
)

// Ports are where a new local cluster listens (all on 127.0.0.1).
type Ports struct {
	SafekeeperPG, SafekeeperGRPC, SafekeeperHTTP [3]int
	PageserverPG, PageserverGRPC, PageserverHTTP int
	// Compute is the primary's port.
	Compute int
}

// DefaultPorts are the ports `make run` has always used.
func DefaultPorts() Ports {
	return Ports{
		SafekeeperPG:   [3]int{5464, 5474, 5484},
		SafekeeperGRPC: [3]int{5465, 5475, 5485},
		SafekeeperHTTP: [3]int{7676, 7686, 7696},
		PageserverPG:   64000, PageserverGRPC: 64001, PageserverHTTP: 9898,
		Compute: 55432,
	}
}

// Port flags, named in errors about taken ports.
const (
	FlagSafekeeperPG   = "--safekeeper-pg-ports"
	FlagSafekeeperGRPC = "--safekeeper-grpc-ports"
	FlagSafekeeperHTTP = "--safekeeper-http-ports"
	FlagPageserverPG   = "--pageserver-pg-port"
	FlagPageserverGRPC = "--pageserver-grpc-port"
	FlagPageserverHTTP = "--pageserver-http-port"
	FlagComputePort    = "--pg-port"
)

// portUse is one port a cluster needs, what for and the flag choosing it.
type portUse struct {
	port       int
	what, flag string
}

func (p Ports) uses() []portUse {
	var u []portUse
	for i := range 3 {
		u = append(u,
			portUse{p.SafekeeperPG[i], fmt.Sprintf("safekeeper %d libpq", i+1), FlagSafekeeperPG},
			portUse{p.SafekeeperGRPC[i], fmt.Sprintf("safekeeper %d gRPC", i+1), FlagSafekeeperGRPC},
			portUse{p.SafekeeperHTTP[i], fmt.Sprintf("safekeeper %d HTTP", i+1), FlagSafekeeperHTTP})
	}
	return append(u,
		portUse{p.PageserverPG, "pageserver libpq", FlagPageserverPG},
		portUse{p.PageserverGRPC, "pageserver gRPC", FlagPageserverGRPC},
		portUse{p.PageserverHTTP, "pageserver HTTP", FlagPageserverHTTP},
		portUse{p.Compute, "the primary (PostgreSQL)", FlagComputePort})
}

// Check verifies that the ports are valid, distinct and free now.
func (p Ports) Check() error {
	seen := map[int]string{}
	for _, u := range p.uses() {
		if u.port <= 0 || u.port > 65535 {
			return fmt.Errorf("port %d for %s is out of range (%s)", u.port, u.what, u.flag)
		}
		if other, ok := seen[u.port]; ok {
			return fmt.Errorf("port %d is given both to %s and to %s (%s)", u.port, other, u.what, u.flag)
		}
		seen[u.port] = u.what
	}
	for _, u := range p.uses() {
		if err := process.AddrFree(addr(u.port)); err != nil {
			return fmt.Errorf("port %d, for %s, is taken (another cluster, or `make run` still running?): choose another with %s (%v)", u.port, u.what, u.flag, err)
		}
	}
	return nil
}

// ParsePortList parses a flag value of three comma-separated ports.
func ParsePortList(flag, s string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return out, fmt.Errorf("%s %q: want three comma-separated ports, one per safekeeper", flag, s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 || n > 65535 {
			return out, fmt.Errorf("%s %q: %q is not a port", flag, s, p)
		}
		out[i] = n
	}
	return out, nil
}

// FormatPortList is the flag form of three ports.
func FormatPortList(p [3]int) string { return fmt.Sprintf("%d,%d,%d", p[0], p[1], p[2]) }

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
