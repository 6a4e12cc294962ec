package pq_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/id"
	"strata.dev/libs/jwtauth"
	"strata.dev/libs/pq"
)

// bytesConn is a net.Conn whose client side is a fixed byte string and whose
// output is discarded: deterministic, for fuzzing.
type bytesConn struct {
	r *bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzKey is a fixed key so that seeds can carry valid tokens.
var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func encode(t testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// FuzzServe feeds arbitrary client bytes to ServeConn, which must return
// without panicking or hanging. The first byte picks the port's auth mode.
func FuzzServe(f *testing.F) {
	tenant := id.MustParse("3d1f7595b468230304e0b73cecbcb081")
	tok, err := jwtauth.Sign(fuzzKey, jwtauth.Claims{Scope: jwtauth.ScopeTenant, TenantID: &tenant})
	if err != nil {
		f.Fatal(err)
	}
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "u", "options": "-c tenant_id=ab timeline_id=cd"}}
	seeds := [][]byte{
		encode(f, startup, &pgproto3.Query{String: "IDENTIFY_SYSTEM"}, &pgproto3.Terminate{}),
		encode(f, &pgproto3.SSLRequest{}, &pgproto3.GSSEncRequest{}, startup, &pgproto3.Query{String: "SESSION"}),
		encode(f, startup, &pgproto3.Query{String: "COPY_ECHO"}, &pgproto3.CopyData{Data: []byte("abc")},
			&pgproto3.Flush{}, &pgproto3.CopyData{Data: []byte("stop")}),
		encode(f, startup, &pgproto3.Query{String: "COPY_ECHO"}, &pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}),
		encode(f, startup, &pgproto3.Query{String: "COPY_ECHO"}, &pgproto3.CopyFail{Message: "bye"}),
		encode(f, startup, &pgproto3.Parse{Name: "s", Query: "IDENTIFY_SYSTEM"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"},
			&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{nil, []byte("1")}}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}),
		encode(f, startup, &pgproto3.Query{String: "FAIL_SQLSTATE"}, &pgproto3.Query{String: "set datestyle to ISO"},
			&pgproto3.Query{String: "-- ping"}, &pgproto3.FunctionCall{Function: 1}, &pgproto3.Query{String: "FAIL_FATAL"}),
		encode(f, startup, &pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		encode(f, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}}),
		encode(f, startup, &pgproto3.PasswordMessage{Password: tok}, &pgproto3.Query{String: "SESSION"}),
		append(encode(f, startup, &pgproto3.Query{String: "COPY_ECHO"}), 'f', 0, 0, 0, 4), // empty CopyFail
		append(encode(f, startup), 'Q', 0, 0, 0, 4),                                       // empty Query
		{0, 0, 0, 8, 0, 3, 0, 0},
		{0xff, 0xff, 0xff, 0xff},
		{},
	}
	for mode := byte(0); mode < 3; mode++ {
		for _, s := range seeds {
			f.Add(append([]byte{mode}, s...))
		}
	}
	// A Bind with a negative parameter length, which panics pgproto3/v2's decoder.
	badBind := encode(f, startup)
	badBind = append(badBind, 'B', 0, 0, 0, 16, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0)
	f.Add(append([]byte{0}, badBind...))

	verifier, err := jwtauth.NewVerifier(fuzzKey.Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cfg := pq.Config{MaxMessageLen: 1 << 20}
		switch data[0] % 3 {
		case 1:
			cfg.Auth = verifier
		case 2:
			cfg.Auth, cfg.TenantOnly = verifier, true
		}
		input := data[1:]

		// Deterministic: every byte is read.
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = pq.ServeConn(context.Background(), &bytesConn{r: bytes.NewReader(input)}, 1, cfg, newTestHandler())
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn hangs on %q", input)
		}

		// Through a real (synchronous) pipe, with the client closing once
		// everything is written. No idle timeout: net.Pipe keeps a pending
		// deadline's timer, and with it the pipe, alive until it fires, which
		// would pile up memory over a long fuzzing run.
		srv, cli := net.Pipe()
		served := make(chan struct{})
		pipeCfg := cfg
		pipeCfg.ReadTimeout = -1
		go func() {
			defer close(served)
			_ = pq.ServeConn(context.Background(), srv, 2, pipeCfg, newTestHandler())
		}()
		go func() { _, _ = io.Copy(io.Discard, cli) }()
		_, _ = cli.Write(input)
		cli.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn over a pipe hangs on %q", input)
		}
	})
}
