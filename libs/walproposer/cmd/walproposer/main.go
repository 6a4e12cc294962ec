// Command walproposer connects an unmodified PostgreSQL 15 primary to a set
// of Strata safekeepers, so that a commit returns only once a majority of
// them has its WAL durable. See --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/daemon"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/walproposer"
	"strata.dev/libs/walproposer/primary"
)

var version = "dev"

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "walproposer: %v\n", err)
		os.Exit(2)
	}
	if cfg.ShowVersion {
		fmt.Println("walproposer", version)
		return
	}
	log, err := daemon.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "walproposer: %v\n", err)
		os.Exit(2)
	}
	log = log.With().Str("timeline", cfg.ttid.String()).Logger()
	if cfg.Procs > 0 {
		// A relay on the commit path does little work per commit but readies
		// several goroutines for it (the primary's stream, each safekeeper's
		// replies). With more than one P the scheduler wakes an idle thread
		// to run each, which spins and parks again: a quarter of the
		// walproposer's CPU per commit in test/bench's BenchmarkCommitLatency
		// (117 → 88 µs a transaction with one client, 52 → 45 with eight),
		// while bulk throughput (BenchmarkQuorumIngest) stayed the same. The
		// sockets are non-blocking, so one P never waits on the kernel.
		runtime.GOMAXPROCS(cfg.Procs)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.SyncSafekeepers {
		err = syncSafekeepers(ctx, cfg, log)
	} else {
		err = run(ctx, cfg, log)
	}
	if err != nil && ctx.Err() == nil {
		log.Error().Err(err).Msg("walproposer failed")
		fmt.Fprintf(os.Stderr, "walproposer: %v\n", err)
		os.Exit(1)
	}
}

func proposerConfig(cfg config, log zerolog.Logger) (walproposer.Config, error) {
	token, err := cfg.token()
	if err != nil {
		return walproposer.Config{}, err
	}
	return walproposer.Config{
		Safekeepers: cfg.Safekeepers, TTID: cfg.ttid, Version: pamsg.Version(cfg.ProtoVersion),
		PgVersion: uint32(cfg.PgVersion), SystemID: cfg.SystemID, WalSegSize: uint32(cfg.WalSegSize),
		StartLSN: cfg.start, AppName: "walproposer", Token: token,
		ReconnectDelay: cfg.ReconnectDelay.Duration, HeartbeatInterval: cfg.Heartbeat.Duration,
		Log: log,
	}, nil
}

// syncSafekeepers is --sync-safekeepers: it prints the committed end of WAL.
func syncSafekeepers(ctx context.Context, cfg config, log zerolog.Logger) error {
	pcfg, err := proposerConfig(cfg, log)
	if err != nil {
		return err
	}
	// Creating a timeline needs a known PostgreSQL version; without one the
	// timeline must already exist on the safekeepers.
	pcfg.AllowTimelineCreation = cfg.PgVersion != 0
	ctx, cancel := context.WithTimeout(ctx, cfg.SyncTimeout.Duration)
	defer cancel()
	end, err := walproposer.New(pcfg, walproposer.NewWALBuffer(0)).SyncSafekeepers(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sync-safekeepers: no majority of %d safekeepers answered with timeline %s within %v (are they up, and do they have the timeline?)",
			len(cfg.Safekeepers), cfg.ttid, cfg.SyncTimeout.Duration)
	}
	if err != nil {
		return err
	}
	log.Info().Stringer("lsn", end).Msg("safekeepers synced")
	fmt.Println(end)
	return nil
}

// run is the normal mode: stream the primary's WAL to the safekeepers.
func run(ctx context.Context, cfg config, log zerolog.Logger) error {
	pcfg := primary.Config{ConnString: cfg.PgConn, Slot: cfg.Slot, AppName: cfg.AppName}
	src, err := primary.Connect(ctx, pcfg)
	if err != nil {
		return err
	}
	sys, err := src.Identify(ctx)
	if err != nil {
		src.Close()
		return err
	}
	restart, created, err := src.EnsureSlot(ctx)
	if err != nil {
		src.Close()
		return err
	}
	log.Info().Uint64("system_id", sys.SystemID).Uint32("pg_version", sys.PgVersion).Stringer("primary_lsn", sys.XLogPos).
		Str("slot", cfg.Slot).Bool("slot_created", created).Stringer("slot_restart_lsn", restart).Msg("connected to the primary")
	start := cfg.start
	if start == 0 {
		start = restart
	}

	prop, err := proposerConfig(cfg, log)
	if err != nil {
		src.Close()
		return err
	}
	prop.PgVersion, prop.SystemID, prop.WalSegSize = sys.PgVersion, sys.SystemID, sys.WalSegSize
	prop.StartLSN, prop.AllowTimelineCreation = start, true
	// On every commit advance, release the primary's waiting commits and
	// record the latency, straight from the goroutine that learned it.
	var current atomic.Pointer[primary.Source]
	var lat latencyTracker
	prop.OnCommit = func(c lsn.LSN) {
		if src := current.Load(); src != nil {
			_ = src.ReportCommit(c)
		}
		lat.committed(c)
	}
	buf := walproposer.NewWALBuffer(0)
	p := walproposer.New(prop, buf)

	reg := daemon.NewMetricsRegistry()
	m := newMetrics(reg, p, buf)
	if cfg.ListenHTTP != "" {
		ln, err := net.Listen("tcp", cfg.ListenHTTP)
		if err != nil {
			src.Close()
			return fmt.Errorf("listen on --listen-http %s: %w", cfg.ListenHTTP, err)
		}
		mux := daemon.NewHTTPMux(reg)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()

	log.Info().Strs("safekeepers", cfg.Safekeepers).Msg("campaigning")
	el, err := p.WaitElected(ctx)
	if err != nil {
		src.Close()
		return fmt.Errorf("election: %w", err)
	}
	if el.TermStartLSN == 0 {
		src.Close()
		return errors.New("every safekeeper is empty and no start LSN is known: give --start-lsn")
	}
	if el.TermStartLSN > sys.XLogPos {
		src.Close()
		return fmt.Errorf("the safekeepers hold WAL up to %v, beyond the primary's end of WAL %v: this primary did not write timeline %s (or it lost WAL)",
			el.TermStartLSN, sys.XLogPos, cfg.ttid)
	}
	if err := buf.Reset(el.TermStartLSN); err != nil {
		src.Close()
		return err
	}
	log.Info().Uint64("term", uint64(el.Term)).Stringer("from", el.TermStartLSN).Msg("elected; streaming the primary's WAL")

	lat.setObserver(func(d time.Duration) { m.commitLatency.Observe(d.Seconds()) })
	sink := &trackingSink{buf: buf, lat: &lat, m: m}
	go streamPrimary(ctx, src, pcfg, sink, p, m, &current, cfg.ReconnectDelay.Duration, log)

	err = <-runErr
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// streamPrimary keeps streaming from the primary, reconnecting after
// failures; each new stream resumes where the buffer ends.
func streamPrimary(ctx context.Context, src *primary.Source, cfg primary.Config, sink *trackingSink, p *walproposer.Proposer, m *metrics, current *atomic.Pointer[primary.Source], delay time.Duration, log zerolog.Logger) {
	backoff := delay
	for ctx.Err() == nil {
		if src == nil {
			var err error
			if src, err = primary.Connect(ctx, cfg); err != nil {
				log.Warn().Err(err).Dur("retry_in", backoff).Msg("primary unreachable")
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
		}
		m.primaryUp.Set(1)
		started := time.Now()
		current.Store(src)
		err := src.Stream(ctx, sink, p)
		current.Store(nil)
		m.primaryUp.Set(0)
		src.Close()
		src = nil
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*delay {
			backoff = delay
		}
		log.Warn().Err(err).Stringer("resume_at", sink.End()).Msg("replication from the primary ended; reconnecting")
	}
}
