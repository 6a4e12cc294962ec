// Command pageserver runs a Strata pageserver: WAL from the safekeepers
// into versioned, layered page storage (PS §2, §5). See --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"strata.dev/libs/daemon"
	"strata.dev/libs/id"
	"strata.dev/libs/pq"
	"strata.dev/pageserver/config"
	"strata.dev/pageserver/grpcapi"
	"strata.dev/pageserver/httpapi"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/metrics"
	"strata.dev/pageserver/pageservice"
	"strata.dev/pageserver/redo"
	"strata.dev/pageserver/tenant"
	"strata.dev/pageserver/timeline"
	pagesrv "strata.dev/proto/pageserver/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { daemon.Main("pageserver", config.Parse, run) }

func run(cfg config.Config) error {
	if cfg.ShowVersion {
		fmt.Println("pageserver", version)
		return nil
	}
	log, err := daemon.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Datadir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	unlock, err := daemon.LockDatadir(cfg.Datadir, "pageserver")
	if err != nil {
		return err
	}
	defer unlock()
	log = log.With().Uint64("ps", cfg.ID).Logger()
	if cfg.NoSync {
		log.Warn().Msg("--no-sync: layer files are not fsync'd; a machine crash can lose data")
	}
	var token string
	if cfg.SafekeeperTokenPath != "" {
		b, err := os.ReadFile(cfg.SafekeeperTokenPath)
		if err != nil {
			return fmt.Errorf("--safekeeper-token-path: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}

	httpLn, err := net.Listen("tcp", cfg.ListenHTTP)
	if err != nil {
		return fmt.Errorf("listen on --listen-http %s: %w", cfg.ListenHTTP, err)
	}
	grpcLn, err := net.Listen("tcp", cfg.ListenGRPC)
	if err != nil {
		return fmt.Errorf("listen on --listen-grpc %s: %w", cfg.ListenGRPC, err)
	}
	pgLn, err := net.Listen("tcp", cfg.ListenPG)
	if err != nil {
		return fmt.Errorf("listen on --listen-pg %s: %w", cfg.ListenPG, err)
	}

	pool, err := newRedoPool(cfg, log)
	if err != nil {
		return err
	}
	defer pool.Close()

	var blockCache *layer.BlockCache
	if cfg.LayerCacheSize > 0 {
		blockCache = layer.NewBlockCache(int64(cfg.LayerCacheSize))
	}
	started := time.Now()
	mgr, err := tenant.Load(cfg.Datadir, tenant.Options{
		Safekeepers: cfg.Safekeepers, SafekeepersGRPC: cfg.SafekeepersGRPC, SafekeeperToken: token, NodeID: cfg.ID,
		Timeline: timeline.Options{
			CheckpointDistance: cfg.CheckpointDistance, ImageThreshold: cfg.ImageCreationThreshold, NoSync: cfg.NoSync,
			Reconstructor: pool, BlockCache: blockCache,
		},
		CompactionPeriod: cfg.CompactionPeriod.Duration,
		PgBinDir:         cfg.PgBinDir, InitdbSuperuser: cfg.InitdbSuperuser,
		Log: log,
	})
	if err != nil {
		return err
	}
	log.Info().Int("timelines", len(mgr.List(id.TenantID{}))).Dur("took", time.Since(started)).Msg("timelines loaded")

	pages := &pageservice.Service{Manager: mgr, Reconstructor: pool, WaitLSNTimeout: cfg.WaitLSNTimeout.Duration,
		Log: log.With().Str("component", "page_service").Logger()}

	promReg := daemon.NewMetricsRegistry()
	metrics.Register(promReg, mgr)
	promReg.MustRegister(pool.Collectors()...)
	promReg.MustRegister(pages.Collectors()...)
	if blockCache != nil {
		promReg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pageserver_layer_block_cache_hits_total",
				Help: "Layer-file block reads answered from the block cache."},
				func() float64 { h, _ := blockCache.Stats(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pageserver_layer_block_cache_misses_total",
				Help: "Layer-file block reads that went to the file."},
				func() float64 { _, m := blockCache.Stats(); return float64(m) }))
	}
	mux := daemon.NewHTTPMux(promReg)
	(&httpapi.API{Manager: mgr, NodeID: cfg.ID, WaitLSNTimeout: cfg.WaitLSNTimeout.Duration, Log: log}).Register(mux)
	// Imports upload whole base backups: no body timeout.
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	// Stop waits for the handlers: they use timelines that mgr.Close closes.
	grpcServer := grpc.NewServer(grpc.WaitForHandlers(true))
	pagesrv.RegisterPageserverServer(grpcServer, &grpcapi.Service{
		Manager: mgr, Pages: pages, WaitLSNTimeout: cfg.WaitLSNTimeout.Duration,
		Node: grpcapi.Node{
			ID: cfg.ID, ListenPG: pgLn.Addr().String(), ListenGRPC: grpcLn.Addr().String(), ListenHTTP: httpLn.Addr().String(),
			Datadir: cfg.Datadir, Version: version, Started: started, Safekeepers: cfg.Safekeepers,
		},
		Log: log.With().Str("component", "grpc").Logger(),
	})
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus(pagesrv.Pageserver_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(grpcServer, healthSrv)
	reflection.Register(grpcServer)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pgDone := make(chan struct{})
	errc := make(chan error, 3)
	go func() { errc <- wrap("HTTP service", httpServer.Serve(httpLn)) }()
	go func() { errc <- wrap("gRPC service", grpcServer.Serve(grpcLn)) }()
	go func() {
		defer close(pgDone)
		errc <- wrap("page service", pages.Serve(ctx, pgLn, pq.Config{}))
	}()
	log.Info().Str("listen_http", httpLn.Addr().String()).Str("listen_grpc", grpcLn.Addr().String()).
		Str("listen_pg", pgLn.Addr().String()).
		Strs("safekeepers", cfg.Safekeepers).Str("datadir", cfg.Datadir).Msg("pageserver started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case runErr = <-errc:
		log.Error().Err(runErr).Msg("a service failed; shutting down")
	}
	stop()
	// Page requests end before the timelines they read are closed.
	<-pgDone
	healthSrv.Shutdown()
	grpcServer.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = httpServer.Shutdown(shutdownCtx)
	cancel()
	// Flushing makes the restart quick; nothing depends on it: WAL above
	// disk_consistent_lsn is streamed again from the safekeepers.
	flushCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := mgr.Close(flushCtx); err != nil {
		log.Error().Err(err).Msg("flush at shutdown")
	}
	log.Info().Msg("stopped")
	return runErr
}

func wrap(what string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// newRedoPool makes the WAL-redo pool the configuration describes. It
// starts no process: the first page that needs one does.
func newRedoPool(cfg config.Config, log zerolog.Logger) (*redo.Pool, error) {
	opts := redo.Options{
		PGBinDir:    cfg.PgBinDir,
		Library:     cfg.WalRedoLibrary,
		Dir:         cfg.WalRedoDir,
		Processes:   cfg.WalRedoProcesses,
		Timeout:     cfg.WalRedoTimeout.Duration,
		IdleTimeout: cfg.WalRedoIdleTimeout.Duration,
		NoGoRedo:    !cfg.WalRedoInGo,
		Log:         log.With().Str("component", "walredo").Logger(),
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = -1 // the flag's 0 means never
	}
	if opts.Library == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find walredo.so next to the pageserver: %w", err)
		}
		opts.Library = filepath.Join(filepath.Dir(exe), "walredo.so")
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Join(cfg.Datadir, "walredo")
	}
	if cfg.WalRedoUser != "" {
		u, err := user.Lookup(cfg.WalRedoUser)
		if err != nil {
			return nil, fmt.Errorf("--walredo-user: %w", err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("--walredo-user %s: %w", cfg.WalRedoUser, err)
		}
		opts.User = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	pool, err := redo.New(opts)
	if err != nil {
		return nil, fmt.Errorf("WAL redo: %w (see --walredo-library, --walredo-user)", err)
	}
	return pool, nil
}
