package pq_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/jwtauth"
	"strata.dev/libs/pq"
)

func keyPair(t *testing.T) (*jwtauth.Verifier, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return v, priv
}

func token(t *testing.T, priv ed25519.PrivateKey, c jwtauth.Claims) string {
	t.Helper()
	s, err := jwtauth.Sign(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTAuth(t *testing.T) {
	v, priv := keyPair(t)
	_, otherPriv := keyPair(t)
	tenant := id.Generate()
	tenantTok := token(t, priv, jwtauth.Claims{Scope: jwtauth.ScopeTenant, TenantID: &tenant})
	dataTok := token(t, priv, jwtauth.Claims{Scope: jwtauth.ScopeSafekeeperData})
	noTenantTok := token(t, priv, jwtauth.Claims{Scope: jwtauth.ScopeTenant})
	otherKeyTok := token(t, otherPriv, jwtauth.Claims{Scope: jwtauth.ScopeSafekeeperData})

	h := newTestHandler()
	general := startServer(t, pq.Config{Auth: v}, h)
	tenantOnly := startServer(t, pq.Config{Auth: v, TenantOnly: true}, h)

	for _, tc := range []struct {
		name, addr, password string
		wantScope            string // "" = connection refused
		wantMsg              string
	}{
		{"tenant token", general, tenantTok, "tenant", ""},
		{"safekeeperdata token", general, dataTok, "safekeeperdata", ""},
		{"tenant token on tenant-only port", tenantOnly, tenantTok, "tenant", ""},
		{"safekeeperdata token on tenant-only port", tenantOnly, dataTok, "", "only \"tenant\" scope is allowed"},
		{"tenant token without tenant_id", general, noTenantTok, "", "tenant_id is missing"},
		{"wrong key", general, otherKeyTok, "", "authentication failed"},
		{"no password", general, "", "", "authentication failed"},
		{"garbage", general, "not-a-jwt", "", "authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tryConnect(t, tc.addr, "sslmode=disable password="+tc.password)
			if tc.wantScope == "" {
				if err == nil {
					conn.Close(testCtx(t))
					t.Fatal("connected")
				}
				pe := pgError(t, err)
				if pe.Code != pq.CodeInternalError || !strings.Contains(pe.Message, tc.wantMsg) {
					t.Fatalf("got %+v, want XX000 containing %q", pe, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(testCtx(t))
			// The JWT flow reports only client_encoding (SK §1.3).
			if conn.ParameterStatus("client_encoding") != "UTF8" || conn.ParameterStatus("server_version") != "" {
				t.Errorf("parameter status: client_encoding=%q server_version=%q",
					conn.ParameterStatus("client_encoding"), conn.ParameterStatus("server_version"))
			}
			if got := facts(t, conn)["scope"]; got != tc.wantScope {
				t.Errorf("scope = %q, want %q", got, tc.wantScope)
			}
		})
	}
}

// selfSigned returns a server TLS config with a throw-away certificate.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}}
}

func TestTLS(t *testing.T) {
	h := newTestHandler()
	addr := startServer(t, pq.Config{TLS: selfSigned(t)}, h)

	conn := connect(t, addr, "sslmode=require")
	if _, err := conn.Exec(testCtx(t), "IDENTIFY_SYSTEM").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, ok := conn.Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is a %T, want *tls.Conn", conn.Conn())
	}

	_, err := tryConnect(t, addr, "sslmode=disable")
	if pe := pgError(t, err); pe.Code != pq.CodeInvalidAuthorization || pe.Message != "must connect with TLS" {
		t.Fatalf("plain connection to a TLS port: %+v", pe)
	}
}
