// Command safekeeper runs a Strata safekeeper: the durable, replicated WAL
// acceptor of SK §0–§5. See --help.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"strata.dev/libs/daemon"
	"strata.dev/libs/id"
	"strata.dev/libs/jwtauth"
	"strata.dev/libs/pq"
	"strata.dev/safekeeper/config"
	"strata.dev/safekeeper/control"
	"strata.dev/safekeeper/grpcsvc"
	"strata.dev/safekeeper/metrics"
	"strata.dev/safekeeper/timeline"
	"strata.dev/safekeeper/walservice"
	"strata.dev/safekeeper/walstore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { daemon.Main("safekeeper", config.Parse, run) }

func run(cfg config.Config) error {
	if cfg.ShowVersion {
		fmt.Println("safekeeper", version)
		return nil
	}
	if cfg.DumpControlFile != "" {
		return dumpControlFile(cfg.DumpControlFile)
	}
	log, err := daemon.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Datadir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	nodeID, err := config.NodeIDFile(cfg.Datadir, cfg.ID)
	if err != nil {
		return err
	}
	if cfg.Init {
		log.Info().Uint64("id", nodeID).Msg("initialized")
		return nil
	}
	unlock, err := daemon.LockDatadir(cfg.Datadir, "safekeeper")
	if err != nil {
		return err
	}
	defer unlock()
	if !cfg.NoSync {
		// After a crash the page cache may hold WAL that never reached the
		// disk; everything loaded below is assumed durable, so make it so.
		if err := syncfs(cfg.Datadir); err != nil {
			return err
		}
	}
	log = log.With().Uint64("sk", nodeID).Logger()

	promReg := daemon.NewMetricsRegistry()
	// The metrics observe the WAL stores, and the per-timeline collector
	// reads the registry: build the observer first, register the collector after.
	m := metrics.New(promReg)
	t0 := time.Now()
	reg, err := timeline.Load(cfg.Datadir, timeline.Config{
		NodeID: id.NodeID(nodeID), NoSync: cfg.NoSync,
		ControlFileSaveInterval: cfg.ControlFileSaveInterval.Duration, Observer: m,
		Prealloc: walstore.Prealloc(cfg.WALPrealloc), RawIO: walstore.NewRawIO(runtime.GOMAXPROCS(0)),
		WALCacheSize: cfg.WALCacheSize,
	}, log)
	if err != nil {
		return err
	}
	metrics.RegisterTimelines(promReg, reg)
	log.Info().Int("timelines", len(reg.List())).Dur("took", time.Since(t0)).Msg("timelines loaded")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	pgCfg, tenantCfg, err := authConfigs(cfg)
	if err != nil {
		return err
	}
	svc := &walservice.Service{
		Registry: reg, NodeID: id.NodeID(nodeID), Metrics: m, Log: log,
		Push: walservice.PushTuning{MaxUnflushedBytes: cfg.MaxUnflushedBytes, MaxUnflushedDelay: cfg.MaxUnflushedDelay.Duration},
	}
	pgLn, err := net.Listen("tcp", cfg.ListenPG)
	if err != nil {
		return fmt.Errorf("listen on --listen-pg %s: %w", cfg.ListenPG, err)
	}
	grpcLn, err := net.Listen("tcp", cfg.ListenGRPC)
	if err != nil {
		return fmt.Errorf("listen on --listen-grpc %s: %w", cfg.ListenGRPC, err)
	}
	httpLn, err := net.Listen("tcp", cfg.ListenHTTP)
	if err != nil {
		return fmt.Errorf("listen on --listen-http %s: %w", cfg.ListenHTTP, err)
	}
	var tenantLn net.Listener
	if cfg.ListenPGTenantOnly != "" {
		if tenantLn, err = net.Listen("tcp", cfg.ListenPGTenantOnly); err != nil {
			return fmt.Errorf("listen on --listen-pg-tenant-only %s: %w", cfg.ListenPGTenantOnly, err)
		}
	}

	grpcServer := grpc.NewServer()
	(&grpcsvc.Service{
		Registry: reg, NodeID: id.NodeID(nodeID), Version: version, Started: time.Now(),
		Addrs: grpcsvc.Addresses{ListenPG: pgLn.Addr().String(), ListenGRPC: grpcLn.Addr().String(), ListenHTTP: httpLn.Addr().String(), Datadir: cfg.Datadir},
	}).Register(grpcServer)
	mux := daemon.NewHTTPMux(promReg)
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": nodeID})
	})
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 5)
	go func() { errc <- wrap("libpq service", svc.Serve(ctx, pgLn, pgCfg)) }()
	if tenantLn != nil {
		go func() { errc <- wrap("tenant-only libpq service", svc.Serve(ctx, tenantLn, tenantCfg)) }()
	}
	go func() { errc <- wrap("gRPC service", grpcServer.Serve(grpcLn)) }()
	go func() { errc <- wrap("HTTP service", httpServer.Serve(httpLn)) }()
	go reg.Run(ctx, time.Second)

	log.Info().Str("listen_pg", pgLn.Addr().String()).Str("listen_grpc", grpcLn.Addr().String()).
		Str("listen_http", httpLn.Addr().String()).Str("datadir", cfg.Datadir).Bool("no_sync", cfg.NoSync).Msg("safekeeper started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case runErr = <-errc:
		log.Error().Err(runErr).Msg("a service failed; shutting down")
	}
	stop()
	grpcServer.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = httpServer.Shutdown(shutdownCtx)
	// Durability never depends on this: everything acknowledged was fsync'd.
	reg.Close()
	return runErr
}

func wrap(what string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func authConfigs(cfg config.Config) (main, tenantOnly pq.Config, err error) {
	if cfg.PgAuthPublicKeyPath != "" {
		if main.Auth, err = jwtauth.LoadVerifier(cfg.PgAuthPublicKeyPath); err != nil {
			return main, tenantOnly, fmt.Errorf("--pg-auth-public-key-path: %w", err)
		}
	}
	tenantOnly.TenantOnly = true
	if cfg.PgTenantOnlyAuthPublicKeyPath != "" {
		if tenantOnly.Auth, err = jwtauth.LoadVerifier(cfg.PgTenantOnlyAuthPublicKeyPath); err != nil {
			return main, tenantOnly, fmt.Errorf("--pg-tenant-only-auth-public-key-path: %w", err)
		}
	} else if cfg.ListenPGTenantOnly != "" {
		return main, tenantOnly, errors.New("--listen-pg-tenant-only needs --pg-tenant-only-auth-public-key-path")
	}
	return main, tenantOnly, nil
}

func dumpControlFile(path string) error {
	dir := path
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		dir = filepath.Dir(path)
		if filepath.Base(path) != control.FileName {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			s, err := control.Decode(b)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return printJSON(s)
		}
	}
	s, err := control.Load(dir)
	if err != nil {
		return err
	}
	return printJSON(s)
}

func printJSON(s *control.State) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open data directory for syncfs: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
