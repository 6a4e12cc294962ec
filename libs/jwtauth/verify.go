package jwtauth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// leeway tolerates clock skew between the token issuer and us when checking
// exp, the same 60 s Neon's JWT library allows by default.
const leeway = 60 * time.Second

// Verifier checks token signatures against a fixed set of Ed25519 public keys.
// It is immutable and safe for concurrent use.
type Verifier struct {
	keys   jwt.VerificationKeySet
	parser *jwt.Parser
}

// NewVerifier accepts tokens signed by any of keys. It is meant for tests and
// for callers that obtain keys some other way than from files.
func NewVerifier(keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("jwt verifier: no public keys")
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, 0, len(keys))}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("jwt verifier: key %d has %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
		set.Keys = append(set.Keys, k)
	}
	return &Verifier{
		keys: set,
		// Pinning the method list is what rejects "none", HMAC (which would
		// let a public key be used as a shared secret) and RSA tokens.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithLeeway(leeway),
		),
	}, nil
}

// LoadVerifier reads the public keys at path: either one PEM file or a
// directory whose every regular, non-hidden file is a PEM file. Each file must
// hold at least one Ed25519 "PUBLIC KEY" (PKIX) block and nothing else.
func LoadVerifier(path string) (*Verifier, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load jwt public keys: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files, err = keyFiles(path)
		if err != nil {
			return nil, fmt.Errorf("load jwt public keys: %w", err)
		}
	}
	var keys []ed25519.PublicKey
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("load jwt public keys: %w", err)
		}
		ks, err := ParsePublicKeysPEM(data)
		if err != nil {
			return nil, fmt.Errorf("load jwt public keys from %s: %w", f, err)
		}
		keys = append(keys, ks...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("load jwt public keys: no key files in directory %s", path)
	}
	return NewVerifier(keys...)
}

// keyFiles lists the candidate key files of dir in name order, so that the
// order keys are tried in does not depend on the file system.
func keyFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		// Editors and config tools leave dotfiles behind; a stray one must not
		// stop the daemon from starting.
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		full := filepath.Join(dir, e.Name())
		st, err := os.Stat(full) // follows symlinks, as Kubernetes secret mounts use them
		if err != nil {
			return nil, err
		}
		if st.Mode().IsRegular() {
			files = append(files, full)
		}
	}
	sort.Strings(files)
	return files, nil
}

// tokenClaims adds the registered claims (exp, nbf, ...) that the jwt library
// validates to our Claims.
type tokenClaims struct {
	Claims
	jwt.RegisteredClaims
}

// Verify checks the token's signature against every key in turn and, if one
// matches, returns its claims. exp and nbf are checked only when present.
func (v *Verifier) Verify(token string) (Claims, error) {
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return v.keys, nil })
	if err != nil {
		return Claims{}, fmt.Errorf("%w: invalid token: %w", ErrUnauthorized, err)
	}
	if !tc.Scope.Valid() {
		return Claims{}, fmt.Errorf("%w: invalid token: unknown scope %q", ErrUnauthorized, tc.Scope)
	}
	return tc.Claims, nil
}

// Sign mints a token for c, signed with priv. Tokens carry no expiry: like
// Neon's, they are revoked by rotating keys.
func Sign(priv ed25519.PrivateKey, c Claims) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("sign token: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, tokenClaims{Claims: c}).SignedString(priv)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
