package main

import (
	"context"
	"errors"
)

// runCompute: scaffold, replaced by the real command this session.
func runCompute(ctx context.Context, e env, args []string) error {
	return errors.New("not built yet")
}
