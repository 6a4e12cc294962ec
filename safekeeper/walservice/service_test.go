package walservice

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/jwtauth"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/pq"
	"strata.dev/libs/skclient"
	"strata.dev/safekeeper/timeline"
)

// server runs the service in-process on a loopback port.
type server struct {
	addr string
	reg  *timeline.Registry
}

func startServer(t *testing.T) *server {
	t.Helper()
	reg, err := timeline.Load(t.TempDir(), timeline.Config{NodeID: 1, NoSync: true}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	svc := &Service{Registry: reg, NodeID: 1, Log: zerolog.Nop()}
	go func() {
		defer close(done)
		_ = svc.Serve(ctx, ln, pq.Config{})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		reg.Close()
	})
	return &server{addr: ln.Addr().String(), reg: reg}
}

func (s *server) cfg(ttid id.TenantTimeline) skclient.Config {
	return skclient.Config{Addr: s.addr, TTID: ttid, AppName: "test"}
}

func newTTID() id.TenantTimeline {
	return id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
}

func greeting(ttid id.TenantTimeline) *pamsg.ProposerGreeting {
	return &pamsg.ProposerGreeting{TenantID: ttid.Tenant, TimelineID: ttid.Timeline, PgVersion: 150010, SystemID: 77, WalSegSize: 16 << 20}
}

// exchange sends messages and returns the next reply: only one, so replies to
// earlier messages in msgs are left unread (and may not have been produced yet).
func exchange(t *testing.T, c *skclient.PushConn, msgs ...pamsg.ProposerMessage) (pamsg.AcceptorMessage, error) {
	t.Helper()
	for _, m := range msgs {
		if err := c.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c.Receive()
}

func dial(t *testing.T, s *server, ttid id.TenantTimeline, v pamsg.Version) *skclient.PushConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := skclient.DialPush(ctx, s.cfg(ttid), v, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantServerError expects the session to end with an ErrorResponse mentioning want.
func wantServerError(t *testing.T, err error, want string) {
	t.Helper()
	var se *skclient.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, want) {
		t.Fatalf("got %v; want an ErrorResponse mentioning %q", err, want)
	}
}

func TestHandshakeBothVersions(t *testing.T) {
	s := startServer(t)
	for _, v := range []pamsg.Version{pamsg.V2, pamsg.V3} {
		ttid := newTTID()
		c := dial(t, s, ttid, v)
		r, err := exchange(t, c, greeting(ttid))
		if err != nil {
			t.Fatalf("v%d greeting: %v", v, err)
		}
		if g := r.(*pamsg.AcceptorGreeting); g.NodeID != 1 || g.Term != 0 {
			t.Fatalf("v%d greeting reply %+v", v, g)
		}
		r, err = exchange(t, c, &pamsg.VoteRequest{Term: 1})
		if err != nil || !r.(*pamsg.VoteResponse).VoteGiven {
			t.Fatalf("v%d vote: %+v, %v", v, r, err)
		}
		// Elected then an empty append (heartbeat) gets an AppendResponse.
		start := lsn.LSN(0x1000028)
		r, err = exchange(t, c,
			&pamsg.ProposerElected{Term: 1, StartStreamingAt: start, TermHistory: pamsg.TermHistory{{Term: 1, LSN: start}}},
			&pamsg.AppendRequest{Term: 1, BeginLSN: start, EndLSN: start, CommitLSN: start})
		if err != nil {
			t.Fatalf("v%d append: %v", v, err)
		}
		if a := r.(*pamsg.AppendResponse); a.Term != 1 || a.FlushLSN != start || a.CommitLSN != start {
			t.Fatalf("v%d append response %+v", v, a)
		}
		flush, commit, ok, err := skclient.TimelineStatus(context.Background(), s.cfg(ttid))
		if err != nil || !ok || flush != start || commit != start {
			t.Fatalf("TIMELINE_STATUS = %v %v %v %v", flush, commit, ok, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	s := startServer(t)
	ttid := newTTID()
	// Create the timeline through a first session.
	c := dial(t, s, ttid, pamsg.V3)
	if _, err := exchange(t, c, greeting(ttid)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	for _, tc := range []struct {
		name string
		msgs []pamsg.ProposerMessage
		raw  []byte
		want string
	}{
		{name: "append before greeting", msgs: []pamsg.ProposerMessage{&pamsg.VoteRequest{Term: 1}}, want: "must be a ProposerGreeting"},
		{name: "wrong pg major", msgs: []pamsg.ProposerMessage{func() pamsg.ProposerMessage { g := greeting(ttid); g.PgVersion = 160000; return g }()}, want: "PostgreSQL 16"},
		{name: "wrong segment size", msgs: []pamsg.ProposerMessage{func() pamsg.ProposerMessage { g := greeting(ttid); g.WalSegSize = 1 << 20; return g }()}, want: "segments"},
		{name: "wrong system id", msgs: []pamsg.ProposerMessage{func() pamsg.ProposerMessage { g := greeting(ttid); g.SystemID = 78; return g }()}, want: "another cluster"},
		{name: "greeting for another timeline", msgs: []pamsg.ProposerMessage{greeting(newTTID())}, want: "reached timeline"},
		{name: "truncated message", raw: []byte{'v', 0, 0}, want: "truncated"},
		{name: "unknown tag", raw: []byte{'x', 1, 2, 3}, want: "unknown"},
		{name: "append before election", msgs: []pamsg.ProposerMessage{greeting(ttid), &pamsg.AppendRequest{Term: 5, BeginLSN: 8, EndLSN: 9, WAL: []byte{1}}}, want: "before ProposerElected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s, ttid, pamsg.V3)
			var err error
			if tc.raw != nil {
				if err := c.Send(greeting(ttid)); err != nil {
					t.Fatal(err)
				}
				if _, err := exchange(t, c); err != nil {
					t.Fatal(err)
				}
				err = sendRaw(t, c, tc.raw)
			} else {
				// Read replies until the session ends with an error.
				for i := range tc.msgs {
					_, err = exchange(t, c, tc.msgs[i])
					if err != nil {
						break
					}
				}
			}
			wantServerError(t, err, tc.want)
			// The connection is closed after the error.
			if _, err := c.Receive(); !errors.Is(err, io.EOF) && err == nil {
				t.Fatalf("connection still open after the error")
			}
		})
	}
	// Nothing above damaged the timeline.
	if _, _, ok, err := skclient.TimelineStatus(context.Background(), s.cfg(ttid)); !ok || err != nil {
		t.Fatalf("timeline gone after bad input: %v", err)
	}
}

// sendRaw sends a CopyData payload that is not a valid message.
func sendRaw(t *testing.T, c *skclient.PushConn, b []byte) error {
	t.Helper()
	if err := c.SendRaw(b); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Receive()
	return err
}

func TestCommands(t *testing.T) {
	s := startServer(t)
	ttid := newTTID()
	c := dial(t, s, ttid, pamsg.V3)
	if _, err := exchange(t, c, greeting(ttid)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := skclient.Connect(ctx, s.cfg(ttid))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, tc := range []struct{ q, want, wantErr string }{
		{q: "SHOW wal_segment_size", want: "16MB"},
		{q: "SHOW data_directory_mode", want: "0700"},
		{q: "IDENTIFY_SYSTEM", want: "77"},
		{q: "TIMELINE_HISTORY 1", want: "00000001.history"},
		{q: "TIMELINE_HISTORY 2", wantErr: "only serves PostgreSQL timeline 1"},
		{q: "SHOW shared_buffers", wantErr: "unrecognized configuration parameter"},
		{q: "DROP TABLE x", wantErr: "unsupported command"},
		{q: "START_REPLICATION nonsense", wantErr: "malformed START_REPLICATION"},
		{q: "START_WAL_PUSH (proto_version '7')", wantErr: "unsupported proto_version"},
	} {
		res, err := conn.Exec(ctx, tc.q).ReadAll()
		if tc.wantErr != "" {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || !strings.Contains(pe.Message, tc.wantErr) {
				t.Errorf("%s: err = %v; want %q", tc.q, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != tc.want {
			t.Errorf("%s = %v, %v; want %q", tc.q, res, err, tc.want)
		}
	}
	// Options are required.
	bare := skclient.Config{Addr: s.addr}
	pc, err := pgconn.Connect(ctx, "host="+strings.Split(s.addr, ":")[0]+" port="+strings.Split(s.addr, ":")[1]+" user=x sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	_, err = pc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err == nil || !strings.Contains(err.Error(), "tenant_id is required") {
		t.Errorf("IDENTIFY_SYSTEM without options: %v", err)
	}
	_ = bare
	// An unknown timeline is a clear error, not an empty result.
	conn2, err := skclient.Connect(ctx, s.cfg(newTTID()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	if _, err := conn2.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("IDENTIFY_SYSTEM on an unknown timeline: %v", err)
	}
	if res, err := conn2.Exec(ctx, "TIMELINE_STATUS").ReadAll(); err != nil || len(res[0].Rows) != 0 {
		t.Errorf("TIMELINE_STATUS on an unknown timeline: %v, %v", res, err)
	}
}

func TestStaleTermAndTimelineCreationOff(t *testing.T) {
	s := startServer(t)
	ttid := newTTID()
	c := dial(t, s, ttid, pamsg.V3)
	if _, err := exchange(t, c, greeting(ttid)); err != nil {
		t.Fatal(err)
	}
	// Wait for the vote's answer: the term is persisted before it is sent, so the
	// second proposer below surely meets term 5.
	if r, err := exchange(t, c, &pamsg.VoteRequest{Term: 5}); err != nil || !r.(*pamsg.VoteResponse).VoteGiven {
		t.Fatalf("vote for term 5: %+v, %v", r, err)
	}
	// A second proposer with a lower term gets a term-only answer.
	c2 := dial(t, s, ttid, pamsg.V3)
	if _, err := exchange(t, c2, greeting(ttid)); err != nil {
		t.Fatal(err)
	}
	r, err := exchange(t, c2, &pamsg.VoteRequest{Term: 3})
	if err != nil {
		t.Fatal(err)
	}
	if v := r.(*pamsg.VoteResponse); v.VoteGiven || v.Term != 5 {
		t.Fatalf("stale vote = %+v", v)
	}
	r, err = exchange(t, c2, &pamsg.AppendRequest{Term: 3, BeginLSN: 8, EndLSN: 8})
	if err != nil {
		t.Fatal(err)
	}
	if a := r.(*pamsg.AppendResponse); a.Term != 5 || a.FlushLSN != 0 {
		t.Fatalf("stale append = %+v; want term-only", a)
	}

	// Without allow_timeline_creation an unknown timeline closes silently.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other := newTTID()
	c3, err := skclient.DialPush(ctx, s.cfg(other), pamsg.V3, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := exchange(t, c3, greeting(other)); !errors.Is(err, io.EOF) {
		t.Fatalf("unknown timeline without creation: %v; want a silent close", err)
	}
	if _, err := s.reg.Get(other); err == nil {
		t.Fatal("timeline created although creation was not allowed")
	}
}

// With JWT auth, a tenant token reaches only its own tenant's timelines and
// a safekeeperdata token reaches all; no token is refused at login.
func TestJWTAuth(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := jwtauth.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := timeline.Load(t.TempDir(), timeline.Config{NodeID: 1, NoSync: true}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&Service{Registry: reg, NodeID: 1, Log: zerolog.Nop()}).Serve(ctx, ln, pq.Config{Auth: verifier})
	}()
	defer func() { cancel(); <-done; reg.Close() }()

	mine, other := newTTID(), newTTID()
	sign := func(c jwtauth.Claims) string {
		tok, err := jwtauth.Sign(priv, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tenantTok := sign(jwtauth.Claims{Scope: jwtauth.ScopeTenant, TenantID: &mine.Tenant})
	adminTok := sign(jwtauth.Claims{Scope: jwtauth.ScopeSafekeeperData})
	status := func(ttid id.TenantTimeline, tok string) error {
		_, _, _, err := skclient.TimelineStatus(ctx, skclient.Config{Addr: ln.Addr().String(), TTID: ttid, Token: tok})
		return err
	}
	if err := status(mine, tenantTok); err != nil {
		t.Errorf("own tenant with a tenant token: %v", err)
	}
	if err := status(other, tenantTok); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Errorf("other tenant with a tenant token: %v; want refused", err)
	}
	if err := status(other, adminTok); err != nil {
		t.Errorf("safekeeperdata token: %v", err)
	}
	if err := status(mine, ""); err == nil {
		t.Error("no token accepted")
	}
	if err := status(mine, sign(jwtauth.Claims{Scope: jwtauth.ScopeTenant, TenantID: &mine.Tenant})+"x"); err == nil {
		t.Error("a tampered token accepted")
	}
}
