package local

import (
	"net"
	"strings"
	"testing"

	"strata.dev/cli/cluster"
	"strata.dev/cli/compute"
	"strata.dev/libs/id"
)

func testCluster(t *testing.T, computes map[string]cluster.Compute) *Cluster {
	t.Helper()
	dir := t.TempDir()
	f := &cluster.File{
		TenantID:    id.Generate().String(),
		Pageserver:  cluster.Daemon{ID: 1, ListenPG: "127.0.0.1:1", ListenGRPC: "127.0.0.1:2"},
		Safekeepers: []cluster.Daemon{{ID: 1, ListenPG: "127.0.0.1:3", ListenGRPC: "127.0.0.1:4"}},
		Timelines:   map[string]string{"main": id.Generate().String(), "dev": id.Generate().String()},
		Computes:    computes,
	}
	c := &Cluster{Dir: dir, File: f}
	c.Compute = compute.Env{Dir: dir, ServerDir: dir, File: f, Say: func(string, ...any) {}}
	return c
}

func TestPlanCompute(t *testing.T) {
	// A listener on a port no compute records: plan must skip it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port

	c := testCluster(t, map[string]cluster.Compute{
		"main": {Timeline: "main", Port: 55432},
		"ro":   {Timeline: "main", Port: FirstComputePort, LSN: "0/1000000"},
	})
	for _, tc := range []struct {
		name    string
		compute string
		want    cluster.Compute
		err     string
		// port is the port chosen; -1: any free one past those recorded
		// (55433 is ro's), from FirstComputePort up.
		port int
	}{
		{name: "second read-write on a timeline", compute: "second", want: cluster.Compute{Timeline: "main"},
			err: "timeline main already has a read-write compute, main"},
		{name: "read-only beside the primary", compute: "ro2", want: cluster.Compute{Timeline: "main", LSN: "0/2000000"},
			port: -1},
		{name: "read-write on another timeline", compute: "dev", want: cluster.Compute{Timeline: "dev"}, port: -1},
		{name: "a recorded compute's port", compute: "dev", want: cluster.Compute{Timeline: "dev", Port: 55432},
			err: "port 55432 belongs to compute main"},
		{name: "a port in use", compute: "dev", want: cluster.Compute{Timeline: "dev", Port: busy},
			err: "is taken: choose another with --port"},
		{name: "same name on another timeline", compute: "ro", want: cluster.Compute{Timeline: "dev"},
			err: "compute ro exists on timeline main"},
		{name: "a stopped compute again keeps its settings", compute: "ro", want: cluster.Compute{Timeline: "main"},
			port: FirstComputePort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.plan(c.File, tc.compute, tc.want)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("plan: %+v, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.port == -1 && got.Port > FirstComputePort {
				return
			}
			if got.Port != tc.port {
				t.Errorf("port %d, want %d", got.Port, tc.port)
			}
			if tc.compute == "ro" && got.LSN != "0/1000000" {
				t.Errorf("restarting ro lost its LSN: %+v", got)
			}
		})
	}
}
