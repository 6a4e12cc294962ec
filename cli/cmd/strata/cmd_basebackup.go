package main

import (
	"context"
	"errors"
)

// runBasebackup: scaffold, replaced by the real command this session.
func runBasebackup(ctx context.Context, e env, args []string) error {
	return errors.New("not built yet")
}
