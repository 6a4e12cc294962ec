// Package watch is a value that goroutines can wait on: the writer stores new
// versions, readers get the current one and a channel closed at the next
// change. It replaces condition variables where waiting must also respect a
// context or a timer (a WAL sender waiting for the commit LSN to move, a
// reader waiting for ingest to reach an LSN).
package watch

import (
	"context"
	"sync"
)

// Value holds a T. The zero value is ready to use and holds T's zero value.
type Value[T any] struct {
	mu      sync.Mutex
	v       T
	changed chan struct{} // closed and replaced on every Set; nil until someone waits
}

// Get returns the current value.
func (w *Value[T]) Get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v
}

// Watch returns the current value and a channel that is closed when it changes.
func (w *Value[T]) Watch() (T, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.v, w.changed
}

// Set stores v and wakes every watcher.
func (w *Value[T]) Set(v T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.v = v
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// Update applies f to the value under the lock and wakes watchers if f
// reports a change.
func (w *Value[T]) Update(f func(v *T) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f(&w.v) && w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// Wait blocks until ok(value) holds and returns that value, or returns the
// context's error.
func (w *Value[T]) Wait(ctx context.Context, ok func(T) bool) (T, error) {
	for {
		v, ch := w.Watch()
		if ok(v) {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}
