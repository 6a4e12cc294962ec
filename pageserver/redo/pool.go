package redo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/goredo"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// Pool rebuilds pages with Go and a pool of redo processes. It implements
// pageserver/timeline.Reconstructor. Safe for concurrent use.
type Pool struct {
	opts    Options
	metrics *metrics
	ctx     context.Context // cancelled by Close: stops spawns
	cancel  context.CancelFunc
	// requestBuffers recycles request encodings: a request is written
	// whole before roundTrip returns, so its buffer is free after.
	requestBuffers sync.Pool
	// active counts requests in flight on all processes: a caller spins
	// for its answer only when it is the only one (see spinFor).
	active atomic.Int32

	mu       sync.Mutex
	tmpl     string     // the template, once made
	procs    []*process // running, possibly dead until reaped
	spawning *spawnOp   // the spawn under way, if any
	nextID   int
	closed   bool
	wg       sync.WaitGroup // spawns and the idle reaper
}

type spawnOp struct {
	done chan struct{}
	err  error
}

// New returns a pool; it starts no process (the first request does).
func New(opts Options) (*Pool, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{opts: opts, metrics: newMetrics(), ctx: ctx, cancel: cancel}
	p.metrics.processes = func() float64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return float64(len(p.procs))
	}
	if opts.IdleTimeout > 0 {
		p.wg.Add(1)
		go p.stopIdle()
	}
	return p, nil
}

// Reconstruct rebuilds r's page: r's image (if any) plus its records.
func (p *Pool) Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error) {
	if r.ImageOnly() {
		return r.Image, nil
	}
	pl, err := makePlan(r, !p.opts.NoGoRedo)
	if err != nil {
		return nil, err
	}
	into := pageBuffer(r.Into)
	page := pl.base
	var dec walrecord.Record
	for _, s := range pl.steps {
		switch s.kind {
		case stepPostgres:
			page, err = p.apply(ctx, pl.key, page, s.records, into)
		case stepGo:
			page, err = applyGo(&dec, pl.block, page, s.records, into)
			if err == nil {
				p.metrics.goApplied.Add(float64(len(s.records)))
			}
		default:
			page, err = neonredo.ApplyAll(pl.key, page, s.records)
		}
		if err != nil {
			return nil, fmt.Errorf("reconstruct %s at %s: %w", r.Key, r.LSN, err)
		}
		p.metrics.replayed.Add(float64(len(s.records)))
	}
	if !slices.ContainsFunc(pl.steps, func(s step) bool { return s.kind == stepPostgres }) {
		p.metrics.native.Inc()
	}
	// A step of Neon records made its own copy: the page goes where the
	// caller asked, as the other steps' do.
	if into != nil && len(page) == pgpage.BlockSize && &page[0] != &into[0] {
		copy(into, page)
		page = into
	}
	return page, nil
}

// applyGo applies PostgreSQL records in Go (goredo) to a copy of base made
// in into (or a new page if into is nil); base is nil when the first
// record initialises the page. makePlan decoded the records already, into
// one reused Record; decoding them again here costs less than keeping a
// decoded copy of each (an allocation per record).
func applyGo(dec *walrecord.Record, target walrecord.BlockRef, base []byte, records []value.Versioned, into []byte) ([]byte, error) {
	page := into
	if page == nil {
		page = make([]byte, pgpage.BlockSize)
	}
	if base != nil {
		if len(base) != pgpage.BlockSize {
			return nil, fmt.Errorf("%w: a base page of %d bytes", ErrInvalidRequest, len(base))
		}
		copy(page, base)
	}
	for i := range records {
		rec := &records[i]
		if err := walrecord.DecodeInto(dec, rec.Record.Raw, rec.LSN, rec.LSN); err != nil {
			return nil, fmt.Errorf("%w: record at %s: %w", ErrInvalidRequest, rec.LSN, err)
		}
		blk := targetBlock(dec, target)
		if blk == nil {
			return nil, fmt.Errorf("%w: record at %s does not reference the page", ErrInvalidRequest, rec.LSN)
		}
		if err := goredo.Apply(page, dec, blk); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
	}
	return page, nil
}

// apply runs records on base in a redo process; the page is read into into
// (nil: a new page).
func (p *Pool) apply(ctx context.Context, k key.Key, base []byte, records []value.Versioned, into []byte) ([]byte, error) {
	buf, _ := p.requestBuffers.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	defer p.requestBuffers.Put(buf)
	req := appendRequest(slices.Grow((*buf)[:0], requestSize(base, records)), k, base, records)
	*buf = req
	page, err := p.send(ctx, req, into)
	if err != nil {
		return nil, err // Reconstruct names the key
	}
	p.metrics.observe(len(records), len(req))
	return page, nil
}

// Ping round-trips a ping through a process.
func (p *Pool) Ping(ctx context.Context) error {
	_, err := p.send(ctx, appendPing(nil), nil)
	return err
}

// send round-trips a request, retrying once on another process if the
// first one fails (the failed process is killed and replaced).
func (p *Pool) send(ctx context.Context, req, into []byte) ([]byte, error) {
	page, err := p.roundTrip(ctx, req, into)
	if err == nil || ctx.Err() != nil || !errors.Is(err, ErrProcess) {
		return page, err
	}
	p.opts.Log.Warn().Err(err).Msg("WAL redo failed, retrying on another process")
	page, err2 := p.roundTrip(ctx, req, into)
	if err2 != nil && errors.Is(err2, ErrProcess) {
		return nil, fmt.Errorf("%w (and before, %v)", err2, err)
	}
	return page, err2
}

// roundTrip sends one whole request to a process and returns its answer.
func (p *Pool) roundTrip(ctx context.Context, req, into []byte) ([]byte, error) {
	proc, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	page, err := proc.request(ctx, req, p.opts.Timeout, into)
	proc.lastUsed.Store(time.Now().UnixNano())
	proc.inflight.Add(-1)
	if err != nil {
		if errors.Is(err, ErrProcess) {
			p.metrics.failures.Inc()
		}
		return nil, err
	}
	p.metrics.seconds.Observe(time.Since(start).Seconds())
	return page, nil
}

// acquire returns a process with a request reserved on it: an idle one if
// there is one, else the least loaded (its requests are pipelined), while a
// new process is spawned in the background if the pool is not full. Only a
// caller that finds no process at all waits, for the one spawn under way.
func (p *Pool) acquire(ctx context.Context) (*process, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		p.procs = slices.DeleteFunc(p.procs, func(pr *process) bool { return !pr.alive() })
		var best *process
		for _, pr := range p.procs {
			if best == nil || pr.inflight.Load() < best.inflight.Load() {
				best = pr
			}
		}
		if best == nil || best.inflight.Load() > 0 {
			if p.spawning == nil && len(p.procs) < p.opts.Processes {
				p.startSpawn()
			}
		}
		if best != nil {
			best.inflight.Add(1)
			p.mu.Unlock()
			return best, nil
		}
		op := p.spawning
		p.mu.Unlock()

		select {
		case <-op.done:
			if op.err != nil {
				return nil, op.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// startSpawn starts a spawn in the background. p.mu is held.
func (p *Pool) startSpawn() {
	op := &spawnOp{done: make(chan struct{})}
	p.spawning = op
	p.nextID++
	id := p.nextID
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		start := time.Now()
		proc, err := p.spawn(id)
		p.mu.Lock()
		p.spawning = nil
		op.err = err
		close(op.done)
		closed := p.closed
		if err == nil && !closed {
			p.procs = append(p.procs, proc)
		}
		p.mu.Unlock()
		switch {
		case err != nil:
			p.metrics.failures.Inc()
			p.opts.Log.Error().Err(err).Msg("WAL redo process did not start")
		case closed:
			proc.kill(ErrClosed)
			<-proc.exited
		default:
			p.metrics.spawns.Inc()
			p.metrics.spawnSeconds.Observe(time.Since(start).Seconds())
		}
	}()
}

func (p *Pool) spawn(id int) (*process, error) {
	p.mu.Lock()
	tmpl := p.tmpl
	p.mu.Unlock()
	if tmpl == "" {
		// Only one spawn runs at a time, so the template is made once.
		var err error
		if tmpl, err = prepareDir(p.ctx, &p.opts); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProcess, err)
		}
		p.mu.Lock()
		p.tmpl = tmpl
		p.mu.Unlock()
	}
	return spawn(p.ctx, &p.opts, tmpl, id, &p.active)
}

// stopIdle stops processes nobody used for IdleTimeout.
func (p *Pool) stopIdle() {
	defer p.wg.Done()
	tick := time.NewTicker(max(p.opts.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-tick.C:
			p.mu.Lock()
			p.procs = slices.DeleteFunc(p.procs, func(pr *process) bool {
				idle := pr.inflight.Load() == 0 && now.Sub(time.Unix(0, pr.lastUsed.Load())) > p.opts.IdleTimeout
				if idle {
					p.opts.Log.Debug().Int("redo_process", pr.id).Msg("stopping an idle WAL redo process")
					pr.kill(fmt.Errorf("idle for %v", p.opts.IdleTimeout))
				}
				return idle || !pr.alive()
			})
			p.mu.Unlock()
		}
	}
}

// Processes is the number of running redo processes.
func (p *Pool) Processes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, pr := range p.procs {
		if pr.alive() {
			n++
		}
	}
	return n
}

// Close stops every process, waits for them to exit and removes their
// scratch copies. Requests in flight fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	procs := p.procs
	p.procs = nil
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	for _, pr := range procs {
		pr.kill(ErrClosed)
	}
	for _, pr := range procs {
		<-pr.exited
	}
	return nil
}

// pageBuffer is into as a page to build in, or nil if it has no room.
func pageBuffer(into []byte) []byte {
	if len(into) < pgpage.BlockSize {
		return nil
	}
	return into[:pgpage.BlockSize:pgpage.BlockSize]
}
