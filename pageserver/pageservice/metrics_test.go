package pageservice

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"strata.dev/libs/id"
	"strata.dev/libs/pq"
	"strata.dev/pageserver/tenant"
)

// sample is the value of the series name{labels} in reg (counters, and
// histograms' sample counts), and whether it exists.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount()), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestQueryMetrics(t *testing.T) {
	s := &Service{}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collectors()...)
	m := s.metrics()

	// Every request type has its series before any request.
	for _, q := range smgrQueryType {
		if n, ok := sample(t, reg, "pageserver_smgr_query_seconds_global", map[string]string{"smgr_query_type": q}); !ok || n != 0 {
			t.Errorf("%s before any request: %v, %v; want a series at 0", q, n, ok)
		}
	}
	m.queryStarted(TagGetPage)(nil)
	m.queryStarted(TagGetPage)(nil)
	inFlight := m.queryStarted(TagNblocks)
	m.queryStarted(TagExists)(errors.New("no such relation"))
	m.waitStartedAt()()

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"pageserver_smgr_query_seconds_global", map[string]string{"smgr_query_type": "get_page_at_lsn"}, 2},
		{"pageserver_smgr_query_started_global_count", map[string]string{"smgr_query_type": "get_page_at_lsn"}, 2},
		{"pageserver_smgr_query_started_global_count", map[string]string{"smgr_query_type": "get_rel_size"}, 1},
		{"pageserver_smgr_query_seconds_global", map[string]string{"smgr_query_type": "get_rel_size"}, 0},
		{"pageserver_smgr_query_seconds_global", map[string]string{"smgr_query_type": "get_rel_exists"}, 1},
		{"pageserver_pagestream_handler_results_total", map[string]string{"outcome": "success"}, 2},
		{"pageserver_pagestream_handler_results_total", map[string]string{"outcome": "error"}, 1},
		{"pageserver_wait_lsn_started_count", nil, 1},
		{"pageserver_wait_lsn_finished_count", nil, 1},
		{"pageserver_wait_lsn_seconds", nil, 1},
	} {
		if got, ok := sample(t, reg, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	inFlight(nil)
	if got, _ := sample(t, reg, "pageserver_smgr_query_seconds_global", map[string]string{"smgr_query_type": "get_rel_size"}); got != 1 {
		t.Errorf("get_rel_size after it finished: %v, want 1", got)
	}
}

// Commands are counted under a bounded label, whatever a client sends,
// and failed ones too.
func TestCommandMetrics(t *testing.T) {
	mgr, err := tenant.Load(t.TempDir(), tenant.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Manager: mgr, WaitLSNTimeout: time.Second}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collectors()...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, pq.Config{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		mgr.Close(context.Background())
	})

	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	conn, err := pgconn.Connect(cctx, "postgres://strata@"+ln.Addr().String()+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(cctx)
	unknown := id.Generate().String() + " " + id.Generate().String()
	for _, q := range []string{
		"SET neon.compute_mode = 'primary'",
		"pagestream_v3 " + unknown, // fails: no such timeline
		"basebackup " + unknown,
		"fullbackup " + unknown,
		strings.Repeat("x", 200),
	} {
		_, _ = conn.Exec(cctx, q).ReadAll()
	}
	for cmd, want := range map[string]float64{"set": 1, "pagestream_v3": 1, "pagestream_v2": 0, "basebackup": 1, "unsupported": 2} {
		if got, ok := sample(t, reg, "pageserver_compute_commands", map[string]string{"command": cmd}); !ok || got != want {
			t.Errorf("pageserver_compute_commands{command=%q} = %v (present %v), want %v", cmd, got, ok, want)
		}
	}
	// No basebackup completed: none observed.
	if got, _ := sample(t, reg, "pageserver_basebackup_query_seconds", nil); got != 0 {
		t.Errorf("pageserver_basebackup_query_seconds count = %v after failed basebackups, want 0", got)
	}
}
