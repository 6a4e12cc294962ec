package tenant

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/rs/zerolog"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/timeline"
	"strata.dev/pageserver/walreceiver"
)

// pgVersion is the only PostgreSQL major version Strata stores.
const pgVersion = 15

// feed turns a timeline's raw WAL into stored values: page-level decoding
// (wal.Decoder), record decoding (walrecord) and ingest. It is the
// walreceiver's Sink, and what WAL imports go through. One goroutine at a
// time uses it.
type feed struct {
	tl      *timeline.Timeline
	pages   ingest.PageReader
	segSize uint64
	log     zerolog.Logger

	dec *wal.Decoder // nil until the first bytes of a stream
	in  *ingest.Ingester
	rec walrecord.Record
	// fatal is an ingest error on a whole, valid record at fatalAt: the
	// same WAL would fail again, so the timeline stops ingesting (Broken)
	// once the records before it are committed again (the failed batch
	// is lost with the ingester). Decode errors are not fatal: another
	// safekeeper may have good bytes.
	fatal   error
	fatalAt lsn.LSN

	// Counters for metrics, read concurrently.
	records atomic.Uint64
	bytes   atomic.Uint64
	// received is the end of the WAL received so far (not yet ingested
	// records included).
	received atomic.Uint64
}

// newFeed makes tl's feed. The pages ingest copies are rebuilt like any
// read: with the timelines' Reconstructor (the WAL-redo pool).
func (m *Manager) newFeed(tl *timeline.Timeline) (*feed, error) {
	last, _ := tl.LastRecordLSN()
	raw, err := datadir.ControlFile(context.Background(), tl, last)
	if err != nil {
		return nil, fmt.Errorf("read pg_control at %s: %w", last, err)
	}
	ctl, err := pgcontrol.Parse(raw)
	if err != nil {
		return nil, err
	}
	f := &feed{tl: tl, pages: pageReader{tl, m.opts.Timeline.Reconstructor}, segSize: ctl.SegmentSize(),
		log: m.log.With().Stringer("timeline", tl.ID()).Logger()}
	f.received.Store(uint64(last))
	return f, nil
}

// Begin implements walreceiver.Sink: records decoded from a previous
// connection are committed, and the stream restarts at the timeline's last
// record.
func (f *feed) Begin() (lsn.LSN, error) {
	if err := f.tl.Broken(); err != nil {
		return 0, err
	}
	if err := f.flush(context.Background()); err != nil {
		if broken := f.tl.Broken(); broken != nil {
			return 0, broken
		}
		// The ingester is gone; its records come again from the stream.
		f.log.Debug().Err(err).Msg("uncommitted records dropped")
	}
	f.dec = nil
	last, _ := f.tl.LastRecordLSN()
	if f.fatal != nil && last >= f.fatalAt {
		return 0, f.fatal
	}
	if last == lsn.Invalid {
		return 0, errors.New("no previous WAL position")
	}
	return last, nil
}

// flush commits the records ingested so far; after an ingest error it
// drops the ingester so that the next stream starts from what was
// committed.
func (f *feed) flush(ctx context.Context) error {
	if f.in == nil {
		return nil
	}
	if err := f.in.Flush(ctx); err != nil {
		f.in = nil
		if broken := f.tl.Broken(); broken != nil {
			return broken
		}
		return err
	}
	return nil
}

// WAL implements walreceiver.Sink: it decodes and ingests every whole
// record in data and commits them.
func (f *feed) WAL(ctx context.Context, start lsn.LSN, data []byte) error {
	stop := lsn.Max
	if f.fatal != nil {
		stop = f.fatalAt
	}
	if err := f.ingest(ctx, start, data, stop); err != nil {
		return err
	}
	if err := f.flush(ctx); err != nil {
		return err
	}
	if last, _ := f.tl.LastRecordLSN(); f.fatal != nil && last >= f.fatalAt {
		return f.fatal
	}
	return nil
}

// ingest feeds data (which starts at start) and ingests the records that
// start below stop.
func (f *feed) ingest(ctx context.Context, start lsn.LSN, data []byte, stop lsn.LSN) error {
	if f.in == nil {
		in, err := ingest.New(ctx, f.tl, f.pages, ingest.Options{})
		if err != nil {
			return err
		}
		f.in, f.dec = in, nil
	}
	if f.dec == nil {
		f.dec = wal.NewDecoder(start, pgVersion, f.segSize)
	} else if fed := f.dec.FedLSN(); fed != start {
		return fmt.Errorf("WAL at %s, the stream is at %s", start, fed)
	}
	f.dec.Feed(data)
	f.bytes.Add(uint64(len(data)))
	f.received.Store(uint64(start) + uint64(len(data)))
	for {
		r, ok, err := f.dec.Next()
		if err != nil {
			return fmt.Errorf("decode WAL: %w", err)
		}
		if !ok {
			return nil
		}
		if r.StartLSN >= stop {
			// The decoder may hold data, valid only during this call: a
			// later call starts a new one.
			f.dec = nil
			return nil
		}
		if err := walrecord.DecodeInto(&f.rec, r.Data, r.StartLSN, r.EndLSN); err != nil {
			return fmt.Errorf("decode record at %s: %w", r.StartLSN, err)
		}
		if err := f.in.Ingest(ctx, &f.rec); err != nil {
			if ctx.Err() == nil && f.tl.Broken() == nil {
				f.fatal, f.fatalAt = fmt.Errorf("ingest record at %s: %w", r.StartLSN, err), r.StartLSN
			}
			return err
		}
		f.records.Add(1)
	}
}

// Positions implements walreceiver.Sink. Without remote storage, local
// layer files are the durable copy: safekeepers may drop WAL below them.
func (f *feed) Positions() walreceiver.Positions {
	last, _ := f.tl.LastRecordLSN()
	dcl := f.tl.DiskConsistentLSN()
	return walreceiver.Positions{LastReceived: last, DiskConsistent: dcl, RemoteConsistent: dcl}
}
