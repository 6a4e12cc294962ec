package main

import (
	"context"
	"errors"
)

// runTimeline: scaffold, replaced by the real command this session.
func runTimeline(ctx context.Context, e env, args []string) error {
	return errors.New("not built yet")
}
