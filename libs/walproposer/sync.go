package walproposer

import (
	"context"
	"fmt"

	"strata.dev/libs/lsn"
)

// SyncSafekeepers is --sync-safekeepers (SK §3.9 step 9): with no primary,
// win an election, bring the majority to the same end of WAL by catching
// laggards up from the donor, commit it, and return that LSN: where a new
// compute's WAL must start. It returns 0 if no safekeeper holds any WAL.
//
// The proposer's WAL buffer must be empty; it is only used as the boundary
// below which WAL comes from the donor.
func (p *Proposer) SyncSafekeepers(ctx context.Context) (lsn.LSN, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := p.onFatal(cancel)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	defer func() { cancel(); <-runErr }()

	el, err := p.WaitElected(ctx)
	if err != nil {
		return 0, err
	}
	end := el.TermStartLSN
	if end == 0 {
		return 0, nil
	}
	if err := p.wal.Reset(end); err != nil {
		return 0, err
	}
	if el.TruncateLSN == end {
		// A majority reported everything up to the end as already known
		// committed: nothing to sync.
		return end, nil
	}
	// Done once a majority committed the term start and every connected
	// safekeeper persisted it, so any later election starts there or later.
	for {
		_, ackCh := p.acks.Watch()
		if p.synced(end) {
			return end, nil
		}
		select {
		case <-ctx.Done():
			if err := p.Err(); err != nil {
				return 0, err
			}
			return 0, fmt.Errorf("sync-safekeepers: %w (committed %v of %v)", ctx.Err(), p.CommitLSN(), end)
		case <-ackCh:
		}
	}
}

func (p *Proposer) synced(end lsn.LSN) bool {
	if p.CommitLSN() < end {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	streaming := 0
	for i := range p.conns {
		if !p.st.Streaming(i) {
			continue
		}
		streaming++
		if p.st.PeerCommitLSN(i) < end {
			return false
		}
	}
	return streaming >= p.st.Quorum()
}
