package pq_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/pq"
)

func connect(t *testing.T, addr, extra string) *pgconn.PgConn {
	t.Helper()
	conn, err := tryConnect(t, addr, extra)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tryConnect(t *testing.T, addr, extra string) (*pgconn.PgConn, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	dsn := fmt.Sprintf("host=%s port=%s user=test dbname=replication connect_timeout=5 %s", host, port, extra)
	return pgconn.Connect(testCtx(t), dsn)
}

func pgError(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a PgError", err, err)
	}
	return pe
}

// facts runs SESSION and returns its rows.
func facts(t *testing.T, conn *pgconn.PgConn) map[string]string {
	t.Helper()
	res, err := conn.Exec(testCtx(t), "SESSION").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, row := range res[0].Rows {
		k, v, _ := strings.Cut(string(row[0]), "=")
		m[k] = v
	}
	return m
}

func TestTrustSimpleQuery(t *testing.T) {
	h := newTestHandler()
	conn := connect(t, startServer(t, pq.Config{}, h), "sslmode=disable")
	for k, want := range map[string]string{"server_version": "14.1", "client_encoding": "UTF8", "integer_datetimes": "on"} {
		if got := conn.ParameterStatus(k); got != want {
			t.Errorf("ParameterStatus(%s) = %q, want %q", k, got, want)
		}
	}

	res, err := conn.Exec(testCtx(t), "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].CommandTag.String() != "IDENTIFY_SYSTEM" || len(res[0].Rows) != 1 {
		t.Fatalf("result = %+v", res)
	}
	fds := res[0].FieldDescriptions
	wantFields := []struct {
		name string
		oid  uint32
		size int16
	}{{"systemid", 25, -1}, {"timeline", 23, 4}, {"xlogpos", 25, -1}, {"dbname", 25, -1}}
	for i, w := range wantFields {
		f := fds[i]
		if f.Name != w.name || f.DataTypeOID != w.oid || f.DataTypeSize != w.size || f.TypeModifier != -1 ||
			f.Format != 0 || f.TableOID != 0 || f.TableAttributeNumber != 0 {
			t.Errorf("field %d = %+v, want %+v", i, f, w)
		}
	}
	row := res[0].Rows[0]
	if string(row[0]) != "7000000000000000001" || string(row[1]) != "1" || string(row[2]) != "0/16B9188" || row[3] != nil {
		t.Errorf("row = %q", row)
	}
}

func TestErrorsCarrySQLSTATE(t *testing.T) {
	conn := connect(t, startServer(t, pq.Config{}, newTestHandler()), "sslmode=disable")
	for _, tc := range []struct{ query, code, msg string }{
		{"FAIL_SQLSTATE", pq.CodeAdminShutdown, "wrapped: shutting down"},
		{"FAIL_PLAIN", pq.CodeInternalError, "plain failure"},
		{"NO_SUCH_COMMAND", pq.CodeSyntaxError, `unsupported command "NO_SUCH_COMMAND"`},
	} {
		_, err := conn.Exec(testCtx(t), tc.query).ReadAll()
		pe := pgError(t, err)
		if pe.Code != tc.code || pe.Message != tc.msg || pe.Severity != "ERROR" || pe.SeverityUnlocalized != "ERROR" {
			t.Errorf("%s: got %+v", tc.query, pe)
		}
	}
	// The session survives errors.
	if err := conn.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping after errors: %v", err)
	}

	// FATAL ends it.
	_, err := conn.Exec(testCtx(t), "FAIL_FATAL").ReadAll()
	if pe := pgError(t, err); pe.Severity != "FATAL" || pe.Code != pq.CodeConnectionFailure {
		t.Fatalf("FAIL_FATAL: %+v", pe)
	}
	if _, err := conn.Exec(testCtx(t), "IDENTIFY_SYSTEM").ReadAll(); err == nil {
		t.Fatal("connection still works after a FATAL error")
	}
}

func TestSessionParameters(t *testing.T) {
	conn := connect(t, startServer(t, pq.Config{}, newTestHandler()),
		`sslmode=disable application_name=safekeeper-7 options='-c timeline_id=ab tenant_id=cd ztenantid=x\\ y'`)
	got := facts(t, conn)
	want := map[string]string{
		"application_name": "safekeeper-7",
		"options":          `-c|timeline_id=ab|tenant_id=cd|ztenantid=x\ y`,
		"tenant_id":        "cd",
		"timeline_id":      "ab",
		"scope":            "",
		"conn_id_set":      "true",
		"remote_set":       "true",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestSetDatestyleAndEmptyQuery(t *testing.T) {
	h := newTestHandler()
	conn := connect(t, startServer(t, pq.Config{}, h), "sslmode=disable")
	res, err := conn.Exec(testCtx(t), "SET DateStyle TO ISO").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if res[0].CommandTag.String() != "SELECT 1" {
		t.Errorf("tag = %q", res[0].CommandTag)
	}
	if err := conn.Ping(testCtx(t)); err != nil { // "-- ping"
		t.Fatal(err)
	}
	if _, err := conn.Exec(testCtx(t), " ; ").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}

func TestExtendedProtocol(t *testing.T) {
	h := newTestHandler()
	conn := connect(t, startServer(t, pq.Config{}, h), "sslmode=disable")
	ctx := testCtx(t)

	res := conn.ExecParams(ctx, "IDENTIFY_SYSTEM", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Rows) != 1 || string(res.Rows[0][2]) != "0/16B9188" || res.CommandTag.String() != "IDENTIFY_SYSTEM" {
		t.Fatalf("ExecParams = %+v", res)
	}

	sd, err := conn.Prepare(ctx, "ident", "IDENTIFY_SYSTEM", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.ParamOIDs) != 0 || len(sd.Fields) != 0 {
		t.Fatalf("statement description = %+v", sd)
	}
	for range 2 {
		res = conn.ExecPrepared(ctx, "ident", nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			t.Fatalf("ExecPrepared = %+v", res)
		}
	}
	if err := conn.Deallocate(ctx, "ident"); err != nil {
		t.Fatal(err)
	}
	res = conn.ExecPrepared(ctx, "ident", nil, nil, nil).Read()
	if pe := pgError(t, res.Err); pe.Code != pq.CodeInvalidSQLStatementName {
		t.Fatalf("ExecPrepared after Deallocate: %+v", pe)
	}

	res = conn.ExecParams(ctx, "FAIL_SQLSTATE", nil, nil, nil, nil).Read()
	if pe := pgError(t, res.Err); pe.Code != pq.CodeAdminShutdown {
		t.Fatalf("ExecParams(FAIL_SQLSTATE): %+v", pe)
	}
	res = conn.ExecParams(ctx, "set datestyle to ISO", nil, nil, nil, nil).Read()
	if res.Err != nil || res.CommandTag.String() != "SELECT 1" {
		t.Fatalf("ExecParams(set datestyle) = %+v", res)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// An error inside a batch discards the batch up to Sync.
func TestExtendedErrorSkipsToSync(t *testing.T) {
	h := newTestHandler()
	conn := connect(t, startServer(t, pq.Config{}, h), "sslmode=disable")
	ctx := testCtx(t)
	fe := conn.Frontend()
	fe.Send(&pgproto3.Bind{PreparedStatement: "missing"})
	fe.Send(&pgproto3.Parse{Query: "IDENTIFY_SYSTEM"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := msg.(*pgproto3.ErrorResponse); !ok || e.Code != pq.CodeInvalidSQLStatementName {
		t.Fatalf("got %#v, want ErrorResponse 26000", msg)
	}
	msg, err = conn.ReceiveMessage(ctx)
	if _, ok := msg.(*pgproto3.ReadyForQuery); !ok || err != nil {
		t.Fatalf("got %#v, %v, want ReadyForQuery", msg, err)
	}
	if n := h.calls.Load(); n != 0 {
		t.Errorf("handler ran %d times inside a failed batch", n)
	}
}

// startCopy sends COPY_ECHO and reads the CopyBothResponse.
func startCopy(t *testing.T, conn *pgconn.PgConn) *pgproto3.Frontend {
	t.Helper()
	fe := conn.Frontend()
	fe.Send(&pgproto3.Query{String: "COPY_ECHO"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.ReceiveMessage(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	cb, ok := msg.(*pgproto3.CopyBothResponse)
	if !ok || cb.OverallFormat != 0 || len(cb.ColumnFormatCodes) != 0 {
		t.Fatalf("got %#v, want CopyBothResponse with format 0 and no columns", msg)
	}
	return fe
}

func receive(t *testing.T, conn *pgconn.PgConn) pgproto3.BackendMessage {
	t.Helper()
	msg, err := conn.ReceiveMessage(testCtx(t))
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return msg
}

func expectClosed(t *testing.T, conn *pgconn.PgConn) {
	t.Helper()
	if msg, err := conn.ReceiveMessage(testCtx(t)); err == nil {
		t.Fatalf("got %#v, want the connection closed", msg)
	}
}

func TestCopyBothRoundTrip(t *testing.T) {
	h := newTestHandler()
	addr := startServer(t, pq.Config{}, h)

	t.Run("client ends with CopyDone", func(t *testing.T) {
		conn := connect(t, addr, "sslmode=disable")
		fe := startCopy(t, conn)
		big := strings.Repeat("w", 128<<10)
		for i, payload := range []string{"a", "", big, "bb"} {
			fe.Send(&pgproto3.CopyData{Data: []byte(payload)})
			if i == 1 {
				fe.Send(&pgproto3.Flush{}) // ignored inside COPY
			}
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			msg := receive(t, conn)
			if cd, ok := msg.(*pgproto3.CopyData); !ok || string(cd.Data) != payload {
				t.Fatalf("echo %d: got %T", i, msg)
			}
		}
		fe.Send(&pgproto3.CopyDone{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, conn)
		if err := <-h.copyErr; !errors.Is(err, io.EOF) {
			t.Fatalf("read side ended with %v, want io.EOF", err)
		}
	})

	t.Run("client aborts with CopyFail", func(t *testing.T) {
		conn := connect(t, addr, "sslmode=disable")
		fe := startCopy(t, conn)
		fe.Send(&pgproto3.CopyFail{Message: "pageserver went away"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		msg := receive(t, conn)
		if e, ok := msg.(*pgproto3.ErrorResponse); !ok || e.Code != pq.CodeInternalError ||
			!strings.Contains(e.Message, "pageserver went away") {
			t.Fatalf("got %#v, want ErrorResponse about the CopyFail", msg)
		}
		expectClosed(t, conn)
		if err := <-h.copyErr; !errors.Is(err, pq.ErrCopyFail) {
			t.Fatalf("read side ended with %v, want ErrCopyFail", err)
		}
	})

	t.Run("server ends the stream", func(t *testing.T) {
		conn := connect(t, addr, "sslmode=disable")
		fe := startCopy(t, conn)
		fe.Send(&pgproto3.CopyData{Data: []byte("stop")})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		msg := receive(t, conn)
		if e, ok := msg.(*pgproto3.ErrorResponse); !ok || e.Code != pq.CodeSuccessfulCompletion ||
			e.Message != "ending streaming" {
			t.Fatalf("got %#v, want ErrorResponse 00000", msg)
		}
		expectClosed(t, conn)
		if err := <-h.copyErr; !errors.Is(err, pq.ErrReadInterrupted) {
			t.Fatalf("read side ended with %v, want ErrReadInterrupted", err)
		}
	})

	t.Run("unexpected message in COPY", func(t *testing.T) {
		conn := connect(t, addr, "sslmode=disable")
		fe := startCopy(t, conn)
		fe.Send(&pgproto3.Query{String: "IDENTIFY_SYSTEM"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		msg := receive(t, conn)
		if e, ok := msg.(*pgproto3.ErrorResponse); !ok || e.Code != pq.CodeProtocolViolation {
			t.Fatalf("got %#v, want ErrorResponse 08P01", msg)
		}
		expectClosed(t, conn)
		<-h.copyErr
	})
}

func TestServerShutdownClosesConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pq.NewServer(pq.Config{}, newTestHandler()).Serve(ctx, ln) }()

	idle := connect(t, ln.Addr().String(), "sslmode=disable")
	inCopy := connect(t, ln.Addr().String(), "sslmode=disable")
	startCopy(t, inCopy)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	expectClosed(t, idle)
	expectClosed(t, inCopy)
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepts")
	}
}
