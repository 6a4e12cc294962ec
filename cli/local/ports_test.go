package local

import (
	"net"
	"strings"
	"testing"
)

func TestParsePortList(t *testing.T) {
	got, err := ParsePortList("--x", "1, 2,3")
	if err != nil || got != [3]int{1, 2, 3} {
		t.Errorf("ParsePortList: %v, %v", got, err)
	}
	for _, in := range []string{"", "1,2", "1,2,3,4", "1,x,3", "1,2,70000", "0,1,2"} {
		if _, err := ParsePortList("--x", in); err == nil || !strings.Contains(err.Error(), "--x") {
			t.Errorf("ParsePortList(%q): %v, want an error naming the flag", in, err)
		}
	}
	if s := FormatPortList(DefaultPorts().SafekeeperPG); s != "5464,5474,5484" {
		t.Errorf("FormatPortList: %q", s)
	}
}

// freePorts are Ports nobody listens on (the defaults may be in use by a
// real cluster on this machine), all different: every listener stays open
// until all are chosen, or the kernel could hand a closed one's port out
// again.
func freePorts(t *testing.T) Ports {
	t.Helper()
	var open []net.Listener
	defer func() {
		for _, ln := range open {
			ln.Close()
		}
	}()
	next := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, ln)
		return ln.Addr().(*net.TCPAddr).Port
	}
	var p Ports
	for i := range 3 {
		p.SafekeeperPG[i], p.SafekeeperGRPC[i], p.SafekeeperHTTP[i] = next(), next(), next()
	}
	p.PageserverPG, p.PageserverGRPC, p.PageserverHTTP, p.Compute = next(), next(), next(), next()
	return p
}

func TestPortsCheck(t *testing.T) {
	p := freePorts(t)
	if err := p.Check(); err != nil {
		t.Fatalf("free ports: %v", err)
	}

	dup := p
	dup.PageserverHTTP = dup.SafekeeperGRPC[1]
	if err := dup.Check(); err == nil || !strings.Contains(err.Error(), "safekeeper 2 gRPC") || !strings.Contains(err.Error(), FlagPageserverHTTP) {
		t.Errorf("a port given twice: %v", err)
	}

	bad := p
	bad.Compute = 0
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), FlagComputePort) {
		t.Errorf("port 0: %v", err)
	}

	ln, err := net.Listen("tcp", addr(p.SafekeeperHTTP[2]))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = p.Check()
	if err == nil || !strings.Contains(err.Error(), "safekeeper 3 HTTP") || !strings.Contains(err.Error(), FlagSafekeeperHTTP) {
		t.Errorf("a taken port: %v; want the port's use and its flag", err)
	}
}
