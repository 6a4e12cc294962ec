// Package pgharness runs throw-away, real, unmodified PostgreSQL 15 clusters
// for tests. It is the one harness every Strata test uses, so that port
// picking, ownership, readiness and cleanup are solved once.
//
// # Who runs PostgreSQL
//
// PostgreSQL refuses to run as root, and CI runs tests as root. The rule is:
// every PostgreSQL binary the harness starts (initdb, pg_ctl, postgres, and
// the client tools started with Cluster.Command: psql, pgbench, pg_waldump,
// pg_receivewal, ...) runs as ServerUser: the current user when the test is
// not root, and otherwise the "postgres" user, or a system user "strata"
// created with useradd on first need when "postgres" does not exist. One
// identity for all binaries means no tool ever meets a file it cannot read;
// the price is that a directory a tool writes into must belong to that user,
// which is what Cluster.MkdirShared is for. A root test process can read and
// remove everything, so tests read WAL and data files directly.
//
// Children get a clean environment (PATH, LANG=C, LC_ALL=C, TZ=UTC, HOME and
// TMPDIR set to the cluster's base directory, and PGHOST/PGPORT/PGUSER/
// PGDATABASE/PGDATA pointing at the cluster), so nothing from the developer's
// shell such as PGOPTIONS or a ~/.psqlrc changes what a test does.
//
// # Layout and lifetime
//
// Each cluster lives in its own base directory under os.TempDir()
// (strata-pg-*), owned by ServerUser, because t.TempDir() is private to the
// test's user. The data directory, the unix socket, the server log and the
// shared directories are inside it. t.Cleanup stops the server in immediate
// mode (killing the postmaster if pg_ctl cannot), prints the end of the
// server log when the test failed, and removes the base directory. If the
// test binary itself is killed, cleanup cannot run and the server is left
// behind.
//
// The binaries come from /usr/lib/postgresql/15/bin unless STRATA_PG_BINDIR
// says otherwise.
package pgharness
