package pgharness

import (
	"testing"

	"strata.dev/libs/pguser"
)

// Names of the unprivileged accounts tried, in order, when the test runs as
// root. The first is the one the Debian packages create; the second is
// created when neither exists.
const (
	debianServerUser = "postgres"
	strataServerUser = "strata"
)

// User is the identity PostgreSQL binaries run as (see the package comment).
type User = pguser.User

// ServerUser returns the identity PostgreSQL binaries run as: the current user
// unless the test runs as root, then "postgres", or "strata" which it creates
// when neither exists.
func ServerUser(t testing.TB) User {
	t.Helper()
	u, err := pguser.Server(debianServerUser, strataServerUser)
	if err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	return u
}
