// Package walservice is the safekeeper's libpq port: the commands of SK §1.5
// (START_WAL_PUSH, START_REPLICATION, IDENTIFY_SYSTEM, TIMELINE_STATUS) plus
// what vanilla pg_receivewal and a standby's walreceiver need from a
// walsender (SHOW wal_segment_size, SHOW data_directory_mode,
// TIMELINE_HISTORY), on top of the protocol server in libs/pq.
package walservice

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/jwtauth"
	"strata.dev/libs/pq"
	"strata.dev/safekeeper/metrics"
	"strata.dev/safekeeper/timeline"
)

// Service answers libpq connections for a safekeeper.
type Service struct {
	Registry *timeline.Registry
	NodeID   id.NodeID
	Metrics  *metrics.Metrics // may be nil
	Log      zerolog.Logger
	// Tuning of the WAL push path; zero values take the defaults.
	Push PushTuning
}

// Serve accepts connections on ln until ctx ends.
func (s *Service) Serve(ctx context.Context, ln net.Listener, cfg pq.Config) error {
	cfg.Log = s.Log
	return pq.NewServer(cfg, s).Serve(ctx, ln)
}

// HandleQuery implements pq.Handler.
func (s *Service) HandleQuery(ctx context.Context, sess *pq.Session, query string) error {
	q := strings.TrimSpace(query)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	label := metrics.QueryLabel(q)
	if s.Metrics != nil {
		s.Metrics.QueriesReceived.WithLabelValues(label).Inc()
		defer s.Metrics.QueriesFinished.WithLabelValues(label).Inc()
	}
	upper := strings.ToUpper(q)
	var cmd func(context.Context, *pq.Session, id.TenantTimeline, string) error
	switch {
	case strings.HasPrefix(upper, "START_WAL_PUSH"):
		cmd = s.startWALPush
	case strings.HasPrefix(upper, "START_REPLICATION"):
		cmd = s.startReplication
	case strings.HasPrefix(upper, "IDENTIFY_SYSTEM"):
		cmd = s.identifySystem
	case strings.HasPrefix(upper, "TIMELINE_STATUS"):
		cmd = s.timelineStatus
	case strings.HasPrefix(upper, "TIMELINE_HISTORY"):
		cmd = s.timelineHistory
	case strings.HasPrefix(upper, "SHOW "):
		cmd = s.show
	default:
		return pq.Errorf(pq.CodeFeatureNotSupported, "unsupported command %q", truncate(q, 80))
	}
	ttid, err := timelineOf(sess)
	if err != nil {
		return err
	}
	if c := sess.Claims(); c != nil {
		if err := jwtauth.CheckTenant(*c, ttid.Tenant); err != nil {
			return pq.Errorf(pq.CodeInternalError, "%v", err)
		}
	}
	// Commands are matched case-insensitively but parsed in upper case only
	// where the grammar is keywords; LSNs and option values keep their text.
	return cmd(ctx, sess, ttid, q)
}

// timelineOf reads tenant_id and timeline_id from the startup options
// (SK §1.2), accepting Neon's legacy aliases.
func timelineOf(sess *pq.Session) (id.TenantTimeline, error) {
	var ttid id.TenantTimeline
	get := func(keys ...string) (string, bool) {
		for _, k := range keys {
			if v, ok := sess.Option(k); ok {
				return v, true
			}
		}
		return "", false
	}
	t, ok := get("tenant_id", "ztenantid")
	if !ok {
		return ttid, pq.Errorf(pq.CodeInternalError, "tenant_id is required: connect with options='-c tenant_id=<hex> timeline_id=<hex>'")
	}
	l, ok := get("timeline_id", "ztimelineid")
	if !ok {
		return ttid, pq.Errorf(pq.CodeInternalError, "timeline_id is required: connect with options='-c tenant_id=<hex> timeline_id=<hex>'")
	}
	var err error
	if ttid.Tenant, err = id.Parse(t); err != nil {
		return ttid, pq.Errorf(pq.CodeInternalError, "tenant_id: %v", err)
	}
	if ttid.Timeline, err = id.Parse(l); err != nil {
		return ttid, pq.Errorf(pq.CodeInternalError, "timeline_id: %v", err)
	}
	return ttid, nil
}

func (s *Service) timeline(ttid id.TenantTimeline) (*timeline.Timeline, error) {
	t, err := s.Registry.Get(ttid)
	if err != nil {
		return nil, pq.Errorf(pq.CodeInternalError, "%v", err)
	}
	return t, nil
}

// isRecoveryClient reports clients that read up to the flush LSN rather than
// the commit LSN (SK §1.6): other safekeepers and walproposer recovery.
func isRecoveryClient(appName string) bool {
	return appName == "wal_proposer_recovery" || strings.HasPrefix(appName, "safekeeper")
}

// identifySystem answers IDENTIFY_SYSTEM with the cluster's real system id,
// so a standby's walreceiver accepts this safekeeper as its primary.
func (s *Service) identifySystem(_ context.Context, sess *pq.Session, ttid id.TenantTimeline, _ string) error {
	t, err := s.timeline(ttid)
	if err != nil {
		return err
	}
	st := t.Status()
	pos := st.CommitLSN
	if isRecoveryClient(sess.ApplicationName()) {
		pos = st.FlushLSN
	}
	if err := sess.WriteRowDescription(pq.TextField("systemid"), pq.Int4Field("timeline"), pq.TextField("xlogpos"), pq.TextField("dbname")); err != nil {
		return err
	}
	if err := sess.WriteDataRow([]byte(strconv.FormatUint(st.Server.SystemID, 10)), []byte("1"), []byte(pos.String()), nil); err != nil {
		return err
	}
	return sess.WriteCommandComplete("IDENTIFY_SYSTEM")
}

// timelineStatus answers TIMELINE_STATUS: one row if the timeline exists, none otherwise.
func (s *Service) timelineStatus(_ context.Context, sess *pq.Session, ttid id.TenantTimeline, _ string) error {
	if err := sess.WriteRowDescription(pq.TextField("flush_lsn"), pq.TextField("commit_lsn")); err != nil {
		return err
	}
	if t, err := s.Registry.Get(ttid); err == nil {
		st := t.Status()
		if err := sess.WriteDataRow([]byte(st.FlushLSN.String()), []byte(st.CommitLSN.String())); err != nil {
			return err
		}
	} else if !errors.Is(err, timeline.ErrNotFound) && !errors.Is(err, timeline.ErrTombstone) {
		return pq.Errorf(pq.CodeInternalError, "%v", err)
	}
	return sess.WriteCommandComplete("TIMELINE_STATUS")
}

// timelineHistory answers TIMELINE_HISTORY. Safekeepers only ever hold
// PostgreSQL timeline 1, whose history is empty.
func (s *Service) timelineHistory(_ context.Context, sess *pq.Session, ttid id.TenantTimeline, q string) error {
	arg := strings.TrimSpace(q[len("TIMELINE_HISTORY"):])
	tli, err := strconv.ParseUint(arg, 10, 32)
	if err != nil {
		return pq.Errorf(pq.CodeSyntaxError, "TIMELINE_HISTORY: timeline %q is not a number", arg)
	}
	if _, err := s.timeline(ttid); err != nil {
		return err
	}
	if tli != 1 {
		return pq.Errorf(pq.CodeInternalError, "timeline %d does not exist on this safekeeper: it only serves PostgreSQL timeline 1", tli)
	}
	if err := sess.WriteRowDescription(pq.TextField("filename"), pq.Field{Name: "content", TypeOID: pq.OIDBytea, TypeLen: -1}); err != nil {
		return err
	}
	if err := sess.WriteDataRow([]byte("00000001.history"), []byte{}); err != nil {
		return err
	}
	return sess.WriteCommandComplete("TIMELINE_HISTORY")
}

// show answers the SHOW commands pg_receivewal and pg_basebackup's
// streamutil send before streaming.
func (s *Service) show(_ context.Context, sess *pq.Session, ttid id.TenantTimeline, q string) error {
	name := strings.ToLower(strings.TrimSpace(q[len("SHOW "):]))
	var value string
	switch name {
	case "wal_segment_size":
		t, err := s.timeline(ttid)
		if err != nil {
			return err
		}
		value = formatSegmentSize(uint64(t.Status().Server.WalSegSize))
	case "data_directory_mode":
		value = "0700"
	case "server_version_num":
		t, err := s.timeline(ttid)
		if err != nil {
			return err
		}
		value = strconv.FormatUint(uint64(t.Status().Server.PgVersion), 10)
	default:
		return pq.Errorf("42704", "unrecognized configuration parameter %q (this safekeeper answers wal_segment_size, data_directory_mode, server_version_num)", name)
	}
	if err := sess.WriteRowDescription(pq.TextField(name)); err != nil {
		return err
	}
	if err := sess.WriteDataRow([]byte(value)); err != nil {
		return err
	}
	return sess.WriteCommandComplete("SHOW")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
