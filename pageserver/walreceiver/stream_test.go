package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/replication"
	"strata.dev/libs/skclient"
)

// scriptConn plays a fixed sequence of server messages. Each entry says how
// many bytes are left in the read buffer after it (0 = the batch ended).
type scriptConn struct {
	msgs     []scripted
	next     int
	buffered int
	replies  []any // *pamsg.PageserverFeedback or replication.StandbyStatus
	closed   bool
	deadline time.Time
}

type scripted struct {
	m     replication.ServerMessage
	more  bool   // more messages are already buffered after this one
	err   error  // returned instead of a message
	after func() // run when the message is handed out
}

func (c *scriptConn) Recv() (replication.ServerMessage, error) {
	if c.next == len(c.msgs) {
		return nil, io.EOF
	}
	s := c.msgs[c.next]
	c.next++
	if s.after != nil {
		s.after()
	}
	c.buffered = 0
	if s.more {
		c.buffered = 1
	}
	return s.m, s.err
}

func (c *scriptConn) Buffered() int { return c.buffered }
func (c *scriptConn) SendPageserverFeedback(f *pamsg.PageserverFeedback) error {
	if time.Now().After(c.deadline) {
		return os.ErrDeadlineExceeded
	}
	cp := *f
	c.replies = append(c.replies, &cp)
	return nil
}
func (c *scriptConn) SendStandbyStatus(s replication.StandbyStatus) error {
	if time.Now().After(c.deadline) {
		return os.ErrDeadlineExceeded
	}
	c.replies = append(c.replies, s)
	return nil
}
func (c *scriptConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }
func (c *scriptConn) Close() error                  { c.closed = true; return nil }

// memSink keeps what it is given and reports the end of it as every position.
type memSink struct {
	data  []byte
	start lsn.LSN
	end   lsn.LSN
	fail  error
}

func (s *memSink) Begin() (lsn.LSN, error) { return s.end, nil }
func (s *memSink) WAL(_ context.Context, start lsn.LSN, data []byte) error {
	if s.fail != nil {
		return s.fail
	}
	if s.end != 0 && start != s.end {
		return fmt.Errorf("gap: %v after %v", start, s.end)
	}
	if s.end == 0 {
		s.start = start
	}
	s.data = append(s.data, data...)
	s.end = start + lsn.LSN(len(data))
	return nil
}
func (s *memSink) Positions() Positions {
	return Positions{LastReceived: s.end, DiskConsistent: s.end, RemoteConsistent: s.end - 8, TimelineSize: 8192}
}

func xlog(start lsn.LSN, n int, walEnd lsn.LSN) *replication.XLogData {
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(uint64(start) + uint64(i))
	}
	return &replication.XLogData{WALStart: start, WALEnd: walEnd, Data: d}
}

func newSession(c *scriptConn, sink Sink, start lsn.LSN, reply Reply) *session {
	return &session{conn: c, sink: sink, reply: reply, silence: time.Minute, pos: start, log: zerolog.Nop()}
}

func TestSessionFeedbackAfterEachBatch(t *testing.T) {
	const s0 = lsn.LSN(0x1000028)
	c := &scriptConn{msgs: []scripted{
		// One batch of three messages up to the commit LSN: one
		// feedback, after the last.
		{m: xlog(s0, 100, s0+300), more: true},
		{m: xlog(s0+100, 100, s0+300), more: true},
		{m: xlog(s0+200, 100, s0+300)},
		// A keepalive that asks gets an answer even though nothing moved.
		{m: &replication.Keepalive{WALEnd: s0 + 1000, ReplyRequested: true}},
		// One that does not ask gets none.
		{m: &replication.Keepalive{WALEnd: s0 + 1000}},
		// An empty XLogData moves nothing: no feedback.
		{m: xlog(s0+300, 0, s0+1000)},
		// A batch of one.
		{m: xlog(s0+300, 700, s0+1000)},
	}}
	sink := &memSink{}
	s := newSession(c, sink, s0, ReplyPageserverFeedback)
	err := s.run(context.Background())
	if !errors.Is(err, io.EOF) {
		t.Fatalf("run: %v", err)
	}
	if sink.start != s0 || sink.end != s0+1000 || len(sink.data) != 1000 {
		t.Fatalf("sink got [%v, %v) with %d bytes", sink.start, sink.end, len(sink.data))
	}
	for i, b := range sink.data {
		if b != byte(uint64(s0)+uint64(i)) {
			t.Fatalf("byte %d differs", i)
		}
	}
	wantEnds := []lsn.LSN{s0 + 300, s0 + 300, s0 + 1000}
	if len(c.replies) != len(wantEnds) {
		t.Fatalf("%d replies, want %d: %+v", len(c.replies), len(wantEnds), c.replies)
	}
	for i, r := range c.replies {
		f := r.(*pamsg.PageserverFeedback)
		if f.LastReceivedLSN != wantEnds[i] || f.DiskConsistentLSN != wantEnds[i] || f.RemoteConsistentLSN != wantEnds[i]-8 ||
			f.CurrentTimelineSize != 8192 || f.ReplyTime.IsZero() {
			t.Errorf("reply %d: %+v, want positions at %v", i, f, wantEnds[i])
		}
	}
	if !s.delivered || s.accepted != s0+1000 || s.commit != s0+1000 {
		t.Fatalf("session state: delivered %v accepted %v commit %v", s.delivered, s.accepted, s.commit)
	}
}

// stepClock is a session's clock that moves only when stepped: feedback
// timing is then independent of how fast the machine runs the test.
type stepClock struct{ t time.Time }

func (c *stepClock) now() time.Time {
	if c.t.IsZero() {
		c.t = time.Unix(1_700_000_000, 0)
	}
	return c.t
}

// step moves the clock past feedbackDelay.
func (c *stepClock) step() { c.t = c.now().Add(feedbackDelay + time.Millisecond) }

// Behind the commit LSN (a catch-up) the end of a batch is no reason to
// report: feedback goes out feedbackDelay apart, and at once once caught up.
func TestSessionFeedbackWhileCatchingUp(t *testing.T) {
	const s0 = lsn.LSN(0x3000028)
	clock := &stepClock{}
	var msgs []scripted
	for i := range 6 {
		// Every message is a batch of its own, as when the socket is read
		// faster than the safekeeper sends.
		msgs = append(msgs, scripted{m: xlog(s0+lsn.LSN(i*10), 10, s0+70)})
		if i == 3 {
			msgs[len(msgs)-1].after = clock.step
		}
	}
	msgs = append(msgs, scripted{m: xlog(s0+60, 10, s0+70)}) // reaches the commit LSN
	c := &scriptConn{msgs: msgs}
	s := newSession(c, &memSink{}, s0, ReplyPageserverFeedback)
	s.clock = clock.now
	s.run(context.Background())
	var ends []lsn.LSN
	for _, r := range c.replies {
		ends = append(ends, r.(*pamsg.PageserverFeedback).LastReceivedLSN)
	}
	if want := []lsn.LSN{s0 + 40, s0 + 70}; !slices.Equal(ends, want) {
		t.Fatalf("feedback at %v, want at %v", ends, want)
	}
}

// A batch that never ends (the buffer is never empty) still reports
// feedbackDelay after the last report.
func TestSessionFeedbackUnderSteadyStream(t *testing.T) {
	const s0 = lsn.LSN(0x2000028)
	clock := &stepClock{}
	var msgs []scripted
	for i := range 6 {
		msgs = append(msgs, scripted{m: xlog(s0+lsn.LSN(i*10), 10, s0+1000), more: true})
		if i == 2 {
			msgs[len(msgs)-1].after = clock.step
		}
	}
	c := &scriptConn{msgs: msgs}
	s := newSession(c, &memSink{}, s0, ReplyPageserverFeedback)
	s.clock = clock.now
	s.run(context.Background())
	if len(c.replies) != 1 || c.replies[0].(*pamsg.PageserverFeedback).LastReceivedLSN != s0+30 {
		t.Fatalf("replies %+v, want one at %v", c.replies, s0+30)
	}
}

func TestSessionStandbyStatusMode(t *testing.T) {
	const s0 = lsn.LSN(0x1000028)
	c := &scriptConn{msgs: []scripted{
		{m: xlog(s0, 64, s0+64)},
		{m: &replication.Keepalive{WALEnd: s0 + 64, ReplyRequested: true}},
	}}
	s := newSession(c, &memSink{}, s0, ReplyStandbyStatus)
	s.run(context.Background())
	if len(c.replies) != 2 {
		t.Fatalf("%d replies, want 2", len(c.replies))
	}
	for _, r := range c.replies {
		st, ok := r.(replication.StandbyStatus)
		if !ok {
			t.Fatalf("reply %T, want a standby status update", r)
		}
		if st.WriteLSN != s0+64 || st.FlushLSN != s0+64 || st.ApplyLSN != s0+56 || st.ReplyTime == 0 {
			t.Fatalf("standby status %+v", st)
		}
	}
}

func TestSessionRejectsGaps(t *testing.T) {
	const s0 = lsn.LSN(0x1000028)
	for _, tc := range []struct {
		name string
		m    *replication.XLogData
	}{
		{"gap", xlog(s0+108, 8, s0+200)},
		{"overlap", xlog(s0+92, 8, s0+200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &scriptConn{msgs: []scripted{{m: xlog(s0, 100, s0+200)}, {m: tc.m}}}
			sink := &memSink{}
			s := newSession(c, sink, s0, ReplyPageserverFeedback)
			err := s.run(context.Background())
			if !errors.Is(err, errWALGap) {
				t.Fatalf("run: %v, want a gap error", err)
			}
			if sink.end != s0+100 {
				t.Fatalf("the sink got WAL up to %v after the bad message", sink.end)
			}
		})
	}
}

func TestSessionSinkError(t *testing.T) {
	const s0 = lsn.LSN(0x1000028)
	boom := errors.New("boom")
	c := &scriptConn{msgs: []scripted{{m: xlog(s0, 100, s0+200)}}}
	s := newSession(c, &memSink{fail: boom}, s0, ReplyPageserverFeedback)
	err := s.run(context.Background())
	var se *sinkError
	if !errors.As(err, &se) || !errors.Is(err, boom) || se.end != s0+100 {
		t.Fatalf("run: %v, want the sink's error with end %v", err, s0+100)
	}
	if s.delivered {
		t.Fatal("refused WAL counted as delivered")
	}
}

func TestIsEndingStreaming(t *testing.T) {
	end := &skclient.ServerError{Code: "00000", Message: `ending streaming to "pageserver-1" at 0/1000028, receiver is caughtup and there is no computes`}
	if !isEndingStreaming(fmt.Errorf("stream: %w", end)) {
		t.Error("the safekeeper's end of stream is not recognised")
	}
	if isEndingStreaming(&skclient.ServerError{Code: "XX000", Message: "WAL segment is not found"}) || isEndingStreaming(io.EOF) {
		t.Error("an error was taken for a normal end")
	}
}

// A sink slower than the silence timeout does not make the feedback write
// time out: the deadline set before the read has passed by then.
func TestSessionSlowSinkStillReplies(t *testing.T) {
	const s0 = lsn.LSN(0x1000028)
	c := &scriptConn{msgs: []scripted{{m: xlog(s0, 8, s0+8)}}}
	sink := &slowSink{memSink: &memSink{}, delay: 60 * time.Millisecond}
	s := newSession(c, sink, s0, ReplyPageserverFeedback)
	s.silence = 20 * time.Millisecond
	if err := s.run(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("run: %v, want the end of the script", err)
	}
	if len(c.replies) != 1 {
		t.Fatalf("%d replies, want 1", len(c.replies))
	}
}

type slowSink struct {
	*memSink
	delay time.Duration
}

func (s *slowSink) WAL(ctx context.Context, start lsn.LSN, data []byte) error {
	time.Sleep(s.delay)
	return s.memSink.WAL(ctx, start, data)
}

// A connection that stays silent past its deadline ends with errSilent.
func TestSessionSilence(t *testing.T) {
	c := &scriptConn{msgs: []scripted{{err: os.ErrDeadlineExceeded}}}
	s := newSession(c, &memSink{}, 0x1000028, ReplyPageserverFeedback)
	if err := s.run(context.Background()); !errors.Is(err, errSilent) {
		t.Fatalf("run: %v, want errSilent", err)
	}
}
