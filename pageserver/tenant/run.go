package tenant

import (
	"context"
	"errors"
	"sync"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/timeline"
	"strata.dev/pageserver/walreceiver"
)

// Timeline is an active timeline: its storage and the WAL receiver that
// feeds it.
type Timeline struct {
	*timeline.Timeline
	m    *Manager
	feed *feed
	recv *walreceiver.Receiver // nil without safekeepers

	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	ingestErr error // why the receiver stopped for good
}

func (m *Manager) newTimeline(tl *timeline.Timeline) (*Timeline, error) {
	t := &Timeline{Timeline: tl, m: m}
	f, err := m.newFeed(tl)
	if err != nil {
		return nil, err
	}
	t.feed = f
	if len(m.opts.Safekeepers) > 0 {
		cfg := m.opts.Receiver
		cfg.Safekeepers, cfg.TTID, cfg.Token, cfg.NodeID = m.opts.Safekeepers, tl.ID(), m.opts.SafekeeperToken, m.opts.NodeID
		cfg.SafekeeperClients = m.skClients
		cfg.LogicalSize = t.LogicalSize
		cfg.SegmentSize = f.segSize
		cfg.Log = f.log
		t.recv = walreceiver.New(cfg, f)
	}
	return t, nil
}

// start runs the WAL receiver until stop or until it fails for good.
func (t *Timeline) start() {
	if t.recv == nil {
		return
	}
	ctx, cancel := context.WithCancel(t.m.ctx)
	t.cancel, t.done = cancel, make(chan struct{})
	go func() {
		defer close(t.done)
		err := t.recv.Run(ctx)
		if err != nil && ctx.Err() == nil {
			t.feed.log.Error().Err(err).Msg("WAL ingest stopped; the timeline serves what it has")
			t.mu.Lock()
			t.ingestErr = err
			t.mu.Unlock()
		}
	}()
}

// stop ends the receiver and commits the records it decoded.
func (t *Timeline) stop() {
	if t.cancel == nil {
		return
	}
	t.cancel()
	<-t.done
	t.cancel = nil
	if err := t.feed.flush(context.Background()); err != nil && !errors.Is(err, ingest.ErrBroken) {
		t.feed.log.Warn().Err(err).Msg("commit the last decoded records")
	}
}

// Status is what the management API reports about a timeline's ingest.
type Status struct {
	State string // "Active" or "Broken"
	// Error is why ingest stopped (Broken), or the receiver's last error.
	Error error
	// Receiver is the WAL receiver's state (zero without safekeepers).
	Receiver walreceiver.Status
	// Received is the end of the WAL received.
	Received        lsn.LSN
	RecordsIngested uint64
	BytesReceived   uint64
}

// Status reports the timeline's ingest state.
func (t *Timeline) Status() Status {
	s := Status{State: "Active", Received: lsn.LSN(t.feed.received.Load()),
		RecordsIngested: t.feed.records.Load(), BytesReceived: t.feed.bytes.Load()}
	if t.recv != nil {
		s.Receiver = t.recv.Status()
		s.Error = s.Receiver.LastError
	}
	t.mu.Lock()
	ingestErr := t.ingestErr
	t.mu.Unlock()
	if err := t.Broken(); err != nil {
		ingestErr = err
	}
	if ingestErr != nil {
		s.State, s.Error = "Broken", ingestErr
	}
	return s
}

// Compact writes image layers where delta layers pile up.
func (t *Timeline) Compact(ctx context.Context) error {
	return t.Timeline.Compact(ctx, func(ctx context.Context, at lsn.LSN) ([]key.Range, error) {
		return datadir.KeySpace(ctx, t.Timeline, at)
	})
}

func (m *Manager) compactLoop() {
	defer m.wg.Done()
	tick := time.NewTicker(m.opts.CompactionPeriod)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
		for _, t := range m.List(id.TenantID{}) {
			if err := t.Compact(m.ctx); err != nil && m.ctx.Err() == nil {
				t.feed.log.Warn().Err(err).Msg("compaction failed")
			}
		}
	}
}

// pageReader reads whole pages for ingest (CREATE DATABASE ... FILE_COPY
// copies the template's pages), rebuilt by rc as every read is: a page
// with PostgreSQL records needs the WAL-redo pool, not Go alone.
type pageReader struct {
	tl *timeline.Timeline
	rc timeline.Reconstructor
}

func (p pageReader) Page(ctx context.Context, k key.Key, at lsn.LSN) ([]byte, error) {
	r, err := p.tl.Get(ctx, k, at)
	if err != nil {
		return nil, err
	}
	return p.rc.Reconstruct(ctx, r)
}
