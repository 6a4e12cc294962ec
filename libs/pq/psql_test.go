package pq_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/jwtauth"
	"strata.dev/libs/pq"
)

func findPsql(t *testing.T) string {
	t.Helper()
	if p := "/usr/lib/postgresql/15/bin/psql"; fileExists(p) {
		return p
	}
	p, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed")
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func runPsql(t *testing.T, addr, password string, args ...string) (string, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sslmode := "prefer"
	if len(args) > 0 && args[0] == "sslmode=require" {
		sslmode, args = "require", args[1:]
	}
	dsn := "host=" + host + " port=" + port + " sslmode=" + sslmode + " user=test dbname=replication " +
		"options='-c timeline_id=ab tenant_id=cd' application_name=psqltest"
	cmd := exec.CommandContext(ctx, findPsql(t), append([]string{"-X", "-A", "-t", dsn}, args...)...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5", "PGPASSWORD="+password)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Real libpq: SSL negotiated down to plain text, simple queries, errors.
func TestPsql(t *testing.T) {
	findPsql(t)
	h := newTestHandler()
	addr := startServer(t, pq.Config{}, h)

	out, err := runPsql(t, addr, "", "-c", "IDENTIFY_SYSTEM")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(out); got != "7000000000000000001|1|0/16B9188|" {
		t.Fatalf("psql output %q", got)
	}

	out, err = runPsql(t, addr, "", "-c", "SESSION")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	for _, want := range []string{"application_name=psqltest", "tenant_id=cd", "timeline_id=ab"} {
		if !strings.Contains(out, want) {
			t.Errorf("SESSION output lacks %q:\n%s", want, out)
		}
	}

	// The SSLRequest was answered 'N': libpq says so when TLS is required.
	out, err = runPsql(t, addr, "", "sslmode=require", "-c", "IDENTIFY_SYSTEM")
	if err == nil || !strings.Contains(out, "server does not support SSL") {
		t.Fatalf("psql sslmode=require: %v\n%s", err, out)
	}

	out, err = runPsql(t, addr, "", "-c", "FAIL_SQLSTATE", "-v", "VERBOSITY=verbose")
	if err == nil || !strings.Contains(out, "ERROR:  57P01: wrapped: shutting down") {
		t.Fatalf("psql on failure: %v\n%s", err, out)
	}
}

func TestPsqlJWT(t *testing.T) {
	findPsql(t)
	v, priv := keyPair(t)
	tenant := id.Generate()
	tok := token(t, priv, jwtauth.Claims{Scope: jwtauth.ScopeTenant, TenantID: &tenant})
	addr := startServer(t, pq.Config{Auth: v, TenantOnly: true}, newTestHandler())

	out, err := runPsql(t, addr, tok, "-c", "SESSION")
	if err != nil || !strings.Contains(out, "scope=tenant") {
		t.Fatalf("psql with token: %v\n%s", err, out)
	}
	out, err = runPsql(t, addr, "wrong", "-c", "SESSION")
	if err == nil || !strings.Contains(out, "authentication failed") {
		t.Fatalf("psql with a bad token: %v\n%s", err, out)
	}
}
