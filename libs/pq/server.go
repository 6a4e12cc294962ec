package pq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server accepts connections on a listener and serves each one with its
// Handler, numbering connections for logs.
type Server struct {
	cfg    Config
	h      Handler
	nextID atomic.Uint32
}

// NewServer returns a Server for one listening port.
func NewServer(cfg Config, h Handler) *Server {
	return &Server{cfg: cfg, h: h}
}

// Serve accepts connections until ctx is cancelled or the listener fails,
// then closes the listener, cancels the open connections and waits for them
// to finish. It returns nil after cancellation, otherwise the accept error.
func (srv *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // closes the listener and every connection
		wg.Wait()
	}()
	context.AfterFunc(ctx, func() { ln.Close() })

	backoff := time.Duration(0)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			// Running out of file descriptors and the like pass; retrying
			// at once would spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			srv.cfg.Log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		id := srv.nextID.Add(1) // wraps around, as Neon's counter does
		wg.Go(func() {
			err := ServeConn(ctx, conn, id, srv.cfg, srv.h)
			ev := srv.cfg.Log.Debug()
			if err != nil && ctx.Err() == nil {
				ev = srv.cfg.Log.Info().Err(err)
			}
			ev.Uint32("conn_id", id).Stringer("peer", conn.RemoteAddr()).Msg("connection closed")
		})
	}
}
