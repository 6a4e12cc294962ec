package pageservice

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"strata.dev/libs/id"
	"strata.dev/libs/pq"
	"strata.dev/pageserver/tenant"
)

// startService serves a pageserver with no timelines on a local port.
func startService(t *testing.T) string {
	mgr, err := tenant.Load(t.TempDir(), tenant.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Service{Manager: mgr, WaitLSNTimeout: time.Second}).Serve(ctx, ln, pq.Config{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		mgr.Close(context.Background())
	})
	return ln.Addr().String()
}

func TestUnknownTimeline(t *testing.T) {
	addr := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	_, err := Dial(ctx, addr, ttid, V3)
	var se *ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "not found") {
		t.Fatalf("pagestream on an unknown timeline: %v", err)
	}
}

func TestCommands(t *testing.T) {
	addr := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, "postgres://strata@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for q, want := range map[string]string{
		"pagestream_v3":         "want <tenant_id> <timeline_id>, got 0 arguments",
		"PAGESTREAM_V2 abc def": "tenant id",
		"pagestream_v3 " + id.Generate().String() + " x": "timeline id",
		"fullbackup x y": "unsupported command",
	} {
		_, err := conn.Exec(ctx, q).ReadAll()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", q, err, want)
		}
	}
	// The session survives errors, and "set" is accepted.
	if _, err := conn.Exec(ctx, "SET neon.compute_mode = 'primary'").ReadAll(); err != nil {
		t.Errorf("set: %v", err)
	}
}
