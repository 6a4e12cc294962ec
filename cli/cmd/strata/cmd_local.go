package main

import (
	"context"
	"errors"
)

// runLocal: scaffold, replaced by the real command this session.
func runLocal(ctx context.Context, e env, args []string) error {
	return errors.New("not built yet")
}
