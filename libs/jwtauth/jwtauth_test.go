package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"strata.dev/libs/id"
)

// Neon's own test key pair and a token it minted (libs/utils/src/auth.rs):
// proves that tokens from Neon tooling verify here.
const (
	neonPubPEM = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEARYwaNBayR+eGI0iXB4s3QxE3Nl2g1iWbr6KtLWeVD/w=
-----END PUBLIC KEY-----
`
	neonPrivPEM = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEID/Drmc1AA6U/znNRWpF3zEGegOATQxfkdWxitcOMsIH
-----END PRIVATE KEY-----
`
	neonToken  = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InRlbmFudCIsInRlbmFudF9pZCI6IjNkMWY3NTk1YjQ2ODIzMDMwNGUwYjczY2VjYmNiMDgxIiwiaXNzIjoibmVvbi5jb250cm9scGxhbmUiLCJpYXQiOjE2Nzg0NDI0Nzl9.rNheBnluMJNgXzSTTJoTNIGy4P_qe0JUHl_nVEGuDCTgHOThPVr552EnmKccrCKquPeW3c2YUk0Y9Oh4KyASAw"
	neonTenant = "3d1f7595b468230304e0b73cecbcb081"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func pubPEM(t *testing.T, pub ed25519.PublicKey) string {
	t.Helper()
	b, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNeonTokenVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pub.pem")
	writeFile(t, path, neonPubPEM)
	v, err := LoadVerifier(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(neonToken)
	if err != nil {
		t.Fatal(err)
	}
	want := id.MustParse(neonTenant)
	if c.Scope != ScopeTenant || c.TenantID == nil || *c.TenantID != want {
		t.Fatalf("claims = %+v", c)
	}

	// And what we sign with Neon's private key, Neon's public key accepts.
	priv, err := ParsePrivateKeyPEM([]byte(neonPrivPEM))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Sign(priv, Claims{Scope: ScopeSafekeeperData})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(tok); err != nil || c.Scope != ScopeSafekeeperData || c.TenantID != nil {
		t.Fatalf("Verify(own token) = %+v, %v", c, err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	v, err := NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	tenant := id.Generate()
	for _, c := range []Claims{
		{Scope: ScopeTenant, TenantID: &tenant},
		{Scope: ScopeSafekeeperData},
		{Scope: ScopeTenantEndpoint, TenantID: &tenant, EndpointID: "ep-1"},
	} {
		tok, err := Sign(priv, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify(%+v): %v", c, err)
		}
		if got.Scope != c.Scope || got.EndpointID != c.EndpointID || (got.TenantID == nil) != (c.TenantID == nil) ||
			(got.TenantID != nil && *got.TenantID != *c.TenantID) {
			t.Fatalf("round trip %+v -> %+v", c, got)
		}
	}
}

func TestClaimsJSON(t *testing.T) {
	tenant := id.MustParse(neonTenant)
	b, err := json.Marshal(Claims{Scope: ScopeTenant, TenantID: &tenant})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"scope":"tenant","tenant_id":"` + neonTenant + `"}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	b, _ = json.Marshal(Claims{Scope: ScopeAdmin})
	if want := `{"scope":"admin","tenant_id":null}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}

// signRaw signs arbitrary claims with any method, to build tokens Sign refuses to make.
func signRaw(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRejects(t *testing.T) {
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	v, err := NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ok := jwt.MapClaims{"scope": "safekeeperdata"}
	noneTok := signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok)
	// The classic confusion attack: HMAC keyed with the public key bytes.
	hsTok := signRaw(t, jwt.SigningMethodHS256, []byte(pub), ok)
	rsTok := signRaw(t, jwt.SigningMethodRS256, rsaKey, ok)
	otherTok, _ := Sign(otherPriv, Claims{Scope: ScopeSafekeeperData})
	expired := signRaw(t, jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"scope": "tenant", "tenant_id": neonTenant,
		"exp": time.Now().Add(-time.Hour).Unix()})
	unknownScope := signRaw(t, jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"scope": "superuser"})
	noScope := signRaw(t, jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"tenant_id": neonTenant})
	badTenant := signRaw(t, jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"scope": "tenant", "tenant_id": "xyz"})
	good, _ := Sign(priv, Claims{Scope: ScopeSafekeeperData})
	tampered := good[:len(good)-2] + "AA"
	if tampered == good {
		tampered = good[:len(good)-2] + "BB"
	}

	for name, tok := range map[string]string{
		"empty": "", "garbage": "not.a.token", "alg none": noneTok, "HS256": hsTok, "RS256": rsTok,
		"other key": otherTok, "expired": expired, "unknown scope": unknownScope, "no scope": noScope,
		"bad tenant_id": badTenant, "tampered signature": tampered,
	} {
		if c, err := v.Verify(tok); err == nil {
			t.Errorf("%s: Verify accepted, claims %+v", name, c)
		} else if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: error %v does not wrap ErrUnauthorized", name, err)
		}
	}

	// exp is honoured, not required.
	future := signRaw(t, jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"scope": "tenant", "tenant_id": neonTenant,
		"exp": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(future); err != nil {
		t.Errorf("token expiring in an hour: %v", err)
	}
	if _, err := v.Verify(good); err != nil {
		t.Errorf("token without exp: %v", err)
	}
}

func TestLoadVerifierDirectoryTriesEveryKey(t *testing.T) {
	dir := t.TempDir()
	pub1, _ := newKey(t)
	pub2, priv2 := newKey(t)
	writeFile(t, filepath.Join(dir, "a.pem"), pubPEM(t, pub1))
	writeFile(t, filepath.Join(dir, "b.pem"), pubPEM(t, pub2))
	writeFile(t, filepath.Join(dir, ".swp"), "editor junk")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := Sign(priv2, Claims{Scope: ScopeSafekeeperData})
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("token signed by the second key: %v", err)
	}
}

func TestLoadVerifierErrors(t *testing.T) {
	dir := t.TempDir()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))
	_, priv := newKey(t)
	privPEM, _ := MarshalPrivateKeyPEM(priv)

	writeFile(t, filepath.Join(dir, "ec.pem"), ecPEM)
	writeFile(t, filepath.Join(dir, "priv.pem"), string(privPEM))
	writeFile(t, filepath.Join(dir, "text.pem"), "hello")
	badDER := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}))
	writeFile(t, filepath.Join(dir, "bad.pem"), badDER)
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.pem"), "no such file"},
		{empty, "no key files"},
		{filepath.Join(dir, "ec.pem"), "want Ed25519"},
		{filepath.Join(dir, "priv.pem"), `"PRIVATE KEY", want "PUBLIC KEY"`},
		{filepath.Join(dir, "text.pem"), "no PEM-encoded public key"},
		{filepath.Join(dir, "bad.pem"), "PEM block 1"},
	} {
		_, err := LoadVerifier(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadVerifier(%s) = %v, want error containing %q", tc.path, err, tc.want)
		}
	}
}

func TestKeyPairFiles(t *testing.T) {
	dir := t.TempDir()
	privPath, pubPath := filepath.Join(dir, "auth_key"), filepath.Join(dir, "auth_public_key.pem")
	priv, err := WriteKeyPair(privPath, pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteKeyPair(privPath, pubPath); err == nil {
		t.Fatal("WriteKeyPair overwrote an existing key")
	}
	if st, err := os.Stat(privPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v, %v", st, err)
	}
	loaded, err := LoadPrivateKey(privPath)
	if err != nil || !loaded.Equal(priv) {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	v, err := LoadVerifier(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := Sign(loaded, Claims{Scope: ScopeSafekeeperData})
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
}

func TestCheckLogin(t *testing.T) {
	tenant := id.Generate()
	for _, tc := range []struct {
		c          Claims
		tenantOnly bool
		ok         bool
	}{
		{Claims{Scope: ScopeTenant, TenantID: &tenant}, true, true},
		{Claims{Scope: ScopeTenant, TenantID: &tenant}, false, true},
		{Claims{Scope: ScopeTenant}, false, false},
		{Claims{Scope: ScopeTenant}, true, false},
		{Claims{Scope: ScopeSafekeeperData}, false, true},
		{Claims{Scope: ScopeSafekeeperData}, true, false},
		{Claims{Scope: ScopeAdmin}, true, false},
	} {
		err := CheckLogin(tc.c, tc.tenantOnly)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrUnauthorized)) {
			t.Errorf("CheckLogin(%+v, tenantOnly=%v) = %v", tc.c, tc.tenantOnly, err)
		}
	}
}

func TestCheckTenant(t *testing.T) {
	mine, other := id.Generate(), id.Generate()
	for _, tc := range []struct {
		c    Claims
		ok   bool
		want string
	}{
		{Claims{Scope: ScopeSafekeeperData}, true, ""},
		{Claims{Scope: ScopeTenant, TenantID: &mine}, true, ""},
		{Claims{Scope: ScopeTenant, TenantID: &other}, false, "not " + mine.String()},
		{Claims{Scope: ScopeTenant}, false, "no tenant_id"},
		{Claims{Scope: ScopePageServerAPI}, false, "ineligible for Safekeeper auth"},
		{Claims{Scope: ScopeAdmin, TenantID: &mine}, false, "ineligible for Safekeeper auth"},
	} {
		err := CheckTenant(tc.c, mine)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckTenant(%+v) = %v", tc.c, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	pub, err := ParsePublicKeysPEM([]byte(neonPubPEM))
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier(pub...)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(neonToken, ".")
	for _, s := range []string{
		neonToken, "", ".", "..", "a.b.c", neonToken + ".", parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(`{"scope":"tenant","tenant_id":null,"exp":"x"}`)) + "." + parts[2],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		// The signature covers the first two parts byte for byte; only the
		// signature's own base64 spelling may vary.
		if err == nil && !strings.HasPrefix(tok, parts[0]+"."+parts[1]+".") {
			t.Fatalf("accepted %q as %+v", tok, c)
		}
	})
}
