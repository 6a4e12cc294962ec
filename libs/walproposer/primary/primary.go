// Package primary is the walproposer's link to an unmodified PostgreSQL
// primary: a physical replication connection through a slot, whose WAL goes
// into the proposer's buffer and whose standby status updates carry the
// quorum-committed LSN as the flush position. With
// synchronous_standby_names = 'walproposer' that is what makes a commit wait
// for a safekeeper majority, and it is the only thing that advances the
// slot, so the primary keeps every byte a majority does not hold yet.
package primary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/pgtime"
	"strata.dev/libs/rawconn"
	"strata.dev/libs/replication"
)

// Config says how to reach the primary.
type Config struct {
	// ConnString is a libpq connection string or URI; replication=true and
	// the application name are added.
	ConnString string
	// Slot is the physical replication slot the walproposer streams through.
	Slot string
	// AppName is what synchronous_standby_names must list (default "walproposer").
	AppName string
	// StatusInterval is the longest pause between standby status updates (default 1 s).
	StatusInterval time.Duration
}

// System describes the primary.
type System struct {
	SystemID   uint64
	Timeline   uint32
	XLogPos    lsn.LSN // the primary's current flush position
	PgVersion  uint32  // server_version_num
	WalSegSize uint32
}

// Source is a replication connection to the primary.
type Source struct {
	cfg  Config
	conn *pgconn.PgConn

	// While streaming: the connection's writer, shared by the periodic
	// status loop and ReportCommit.
	wmu    sync.Mutex
	w      io.Writer
	sink   Sink
	fb     Feedback
	status []byte
}

// Connect opens the replication connection.
func Connect(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.Slot == "" {
		cfg.Slot = "walproposer"
	}
	if cfg.AppName == "" {
		cfg.AppName = "walproposer"
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = time.Second
	}
	pc, err := pgconn.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("primary connection string: %w", err)
	}
	pc.RuntimeParams["replication"] = "true"
	pc.RuntimeParams["application_name"] = cfg.AppName
	pc.DialFunc = rawconn.WrapDial(pc.DialFunc)
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to the primary: %w", err)
	}
	return &Source{cfg: cfg, conn: conn}, nil
}

// Close ends the connection.
func (s *Source) Close() error { return s.conn.Close(context.Background()) }

// Identify runs IDENTIFY_SYSTEM and reads the server version and segment size.
func (s *Source) Identify(ctx context.Context) (System, error) {
	r, err := pglogrepl.IdentifySystem(ctx, s.conn)
	if err != nil {
		return System{}, fmt.Errorf("IDENTIFY_SYSTEM on the primary: %w", err)
	}
	var sys System
	if sys.SystemID, err = strconv.ParseUint(r.SystemID, 10, 64); err != nil {
		return System{}, fmt.Errorf("IDENTIFY_SYSTEM: system id %q: %w", r.SystemID, err)
	}
	sys.Timeline, sys.XLogPos = uint32(r.Timeline), lsn.LSN(r.XLogPos)
	v, err := s.show(ctx, "server_version_num")
	if err != nil {
		return System{}, err
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return System{}, fmt.Errorf("server_version_num %q: %w", v, err)
	}
	sys.PgVersion = uint32(n)
	if sys.PgVersion/10000 != 15 {
		return System{}, fmt.Errorf("the primary runs PostgreSQL %d; Strata supports PostgreSQL 15", sys.PgVersion/10000)
	}
	seg, err := s.show(ctx, "wal_segment_size")
	if err != nil {
		return System{}, err
	}
	size, err := parseSize(seg)
	if err != nil {
		return System{}, fmt.Errorf("wal_segment_size %q: %w", seg, err)
	}
	sys.WalSegSize = uint32(size)
	return sys, nil
}

func (s *Source) show(ctx context.Context, name string) (string, error) {
	res, err := s.conn.Exec(ctx, "SHOW "+name).ReadAll()
	if err != nil {
		return "", fmt.Errorf("SHOW %s on the primary: %w", name, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return "", fmt.Errorf("SHOW %s on the primary: unexpected result", name)
	}
	return string(res[0].Rows[0][0]), nil
}

// parseSize reads a GUC size as SHOW prints it ("16MB", "1GB", "8192").
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			return n * u.mult, err
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// EnsureSlot creates the physical slot if it is missing (reserving WAL from
// now) and returns its restart LSN.
func (s *Source) EnsureSlot(ctx context.Context) (restart lsn.LSN, created bool, err error) {
	restart, exists, err := s.readSlot(ctx)
	if err != nil || exists {
		return restart, false, err
	}
	q := fmt.Sprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", quoteIdent(s.cfg.Slot))
	if _, err := s.conn.Exec(ctx, q).ReadAll(); err != nil {
		return 0, false, fmt.Errorf("create replication slot %q on the primary: %w", s.cfg.Slot, err)
	}
	restart, _, err = s.readSlot(ctx)
	return restart, true, err
}

func (s *Source) readSlot(ctx context.Context) (lsn.LSN, bool, error) {
	res, err := s.conn.Exec(ctx, "READ_REPLICATION_SLOT "+quoteIdent(s.cfg.Slot)).ReadAll()
	if err != nil {
		return 0, false, fmt.Errorf("read replication slot %q on the primary: %w", s.cfg.Slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
		return 0, false, fmt.Errorf("READ_REPLICATION_SLOT: unexpected result")
	}
	row := res[0].Rows[0]
	if row[0] == nil {
		return 0, false, nil
	}
	if string(row[0]) != "physical" {
		return 0, false, fmt.Errorf("replication slot %q on the primary is a %s slot, not physical", s.cfg.Slot, row[0])
	}
	if row[1] == nil {
		return 0, true, nil
	}
	l, err := lsn.Parse(string(row[1]))
	return l, true, err
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Sink receives the primary's WAL.
type Sink interface {
	// End is the LSN the next byte must have.
	End() lsn.LSN
	Append(p []byte)
}

// Feedback is what the primary is told: the quorum-committed LSN, which
// becomes the flush (and apply) position, and the standbys' xmin horizon
// relayed by safekeepers.
type Feedback interface {
	CommitLSN() lsn.LSN
	HotStandbyFeedback() pamsg.HotStandbyFeedback
}

// ReportCommit tells the primary the commit LSN now, if a stream is running.
// The proposer calls it from the goroutine that learned the new commit LSN,
// so a waiting commit is released without another goroutine waking up.
func (s *Source) ReportCommit(commit lsn.LSN) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w == nil {
		return nil
	}
	return s.sendStatusLocked(commit)
}

func (s *Source) sendStatusLocked(commit lsn.LSN) error {
	buf := s.status[:0]
	st := replication.StandbyStatus{WriteLSN: s.sink.End(), FlushLSN: commit, ApplyLSN: commit, ReplyTime: pgtime.Now()}
	buf = appendCopyData(buf, st.Append(nil))
	if hs := s.fb.HotStandbyFeedback(); hs.Xmin != 0 || hs.CatalogXmin != 0 {
		h := replication.HotStandbyFeedback{ReplyTime: pgtime.Now(),
			Xmin: uint32(hs.Xmin), XminEpoch: uint32(hs.Xmin >> 32),
			CatalogXmin: uint32(hs.CatalogXmin), CatalogXminEpoch: uint32(hs.CatalogXmin >> 32)}
		buf = appendCopyData(buf, h.Append(nil))
	}
	s.status = buf
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("send status to the primary: %w", err)
	}
	return nil
}

// Stream streams WAL from sink.End() into sink until ctx ends or the
// connection fails. A status update goes out whenever ReportCommit is
// called, when the primary asks for one, and at least every StatusInterval.
func (s *Source) Stream(ctx context.Context, sink Sink, fb Feedback) error {
	start := sink.End()
	err := pglogrepl.StartReplication(ctx, s.conn, quoteIdent(s.cfg.Slot), pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication})
	if err != nil {
		return fmt.Errorf("START_REPLICATION at %v on the primary: %w", start, err)
	}
	hj, err := s.conn.Hijack()
	if err != nil {
		return err
	}
	conn, fe := hj.Conn, hj.Frontend
	defer conn.Close()
	s.wmu.Lock()
	s.w, s.sink, s.fb = conn, sink, fb
	s.wmu.Unlock()
	defer func() {
		s.wmu.Lock()
		s.w = nil
		s.wmu.Unlock()
	}()
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	wakeStatus := make(chan struct{}, 1)
	poke := func() {
		select {
		case wakeStatus <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var writeErr error
	go func() {
		defer wg.Done()
		defer cancel()
		writeErr = s.statusLoop(ctx, fb, wakeStatus)
	}()
	readErr := func() error {
		for {
			msg, err := fe.Receive()
			if err != nil {
				return fmt.Errorf("receive from the primary: %w", err)
			}
			switch m := msg.(type) {
			case *pgproto3.CopyData:
				sm, err := replication.DecodeServerMessage(m.Data)
				if err != nil {
					return fmt.Errorf("primary: %w", err)
				}
				switch sm := sm.(type) {
				case *replication.XLogData:
					if sm.WALStart != sink.End() {
						return fmt.Errorf("primary sent WAL at %v, expected %v", sm.WALStart, sink.End())
					}
					sink.Append(sm.Data)
				case *replication.Keepalive:
					if sm.ReplyRequested {
						poke()
					}
				}
			case *pgproto3.ErrorResponse:
				return fmt.Errorf("primary: %s (SQLSTATE %s)", m.Message, m.Code)
			case *pgproto3.CopyDone:
				return errors.New("primary ended replication (shutting down?)")
			}
		}
	}()
	cancel()
	wg.Wait()
	if outer.Err() != nil {
		return outer.Err()
	}
	if writeErr != nil && !errors.Is(writeErr, context.Canceled) {
		return writeErr
	}
	return readErr
}

// statusLoop sends the periodic status updates and the ones the primary
// asks for in keepalives.
func (s *Source) statusLoop(ctx context.Context, fb Feedback, wake <-chan struct{}) error {
	timer := time.NewTimer(s.cfg.StatusInterval)
	defer timer.Stop()
	for {
		s.wmu.Lock()
		err := s.sendStatusLocked(fb.CommitLSN())
		s.wmu.Unlock()
		if err != nil {
			return err
		}
		timer.Reset(s.cfg.StatusInterval)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// appendCopyData frames payload as a CopyData message.
func appendCopyData(dst, payload []byte) []byte {
	n := len(payload) + 4
	dst = append(dst, 'd', byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(dst, payload...)
}
