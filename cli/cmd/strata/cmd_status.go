package main

import (
	"context"
	"errors"
)

// runStatus: scaffold, replaced by the real command this session.
func runStatus(ctx context.Context, e env, args []string) error {
	return errors.New("not built yet")
}
