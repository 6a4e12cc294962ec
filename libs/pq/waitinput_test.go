package pq_test

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/pq"
)

// InputPending and WaitInput tell a streaming handler whether more input
// is there (or comes within a moment) without consuming it.
func TestWaitInput(t *testing.T) {
	type obs struct{ pendingBefore, waitedEmpty, waitedArrived bool }
	got := make(chan obs, 1)
	waited := make(chan struct{}) // the first, empty wait is over
	h := pq.HandlerFunc(func(ctx context.Context, s *pq.Session, q string) error {
		if err := s.StartCopyBoth(); err != nil {
			return err
		}
		var o obs
		o.pendingBefore = s.InputPending()
		o.waitedEmpty = s.WaitInput(20 * time.Millisecond)
		close(waited)
		// The client sends one message after the first wait.
		o.waitedArrived = s.WaitInput(5 * time.Second)
		b, err := s.ReadCopyData()
		if err != nil || string(b) != "x" {
			t.Errorf("message after WaitInput: %q, %v", b, err)
		}
		got <- o
		return nil
	})
	addr := startServer(t, pq.Config{}, h)
	host, port, _ := net.SplitHostPort(addr)
	conn, err := pgconn.Connect(testCtx(t), "host="+host+" port="+port+" user=u sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	fe := conn.Frontend()
	fe.Send(&pgproto3.Query{String: "copy"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.Receive(); err != nil { // CopyBothResponse
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's first wait did not end")
	}
	frame := []byte{'d', 0, 0, 0, 0, 'x'}
	binary.BigEndian.PutUint32(frame[1:], 5)
	if _, err := conn.Conn().Write(frame); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-got:
		if o.pendingBefore || o.waitedEmpty || !o.waitedArrived {
			t.Fatalf("observations %+v; want no input at first, then input", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish")
	}
}
