package jwtauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

const (
	pemPublicKey  = "PUBLIC KEY"  // PKIX, what the daemons read
	pemPrivateKey = "PRIVATE KEY" // PKCS #8, what `openssl genpkey -algorithm ed25519` writes
)

// ParsePublicKeysPEM returns every Ed25519 public key in data. Any other PEM
// block, or a public key of another algorithm, is an error: a private key put
// where a public one belongs is a configuration mistake worth stopping for.
func ParsePublicKeysPEM(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != pemPublicKey {
			return nil, fmt.Errorf("PEM block %d is %q, want %q", n, block.Type, pemPublicKey)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d is a %T key, want Ed25519", n, pub)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM-encoded public key found")
	}
	return keys, nil
}

// MarshalPublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// MarshalPrivateKeyPEM encodes priv as a PKCS #8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes the first PEM block of data as a PKCS #8 Ed25519
// private key.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != pemPrivateKey {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is a %T key, want Ed25519", k)
	}
	return priv, nil
}

// LoadPrivateKey reads a PKCS #8 Ed25519 private key from a PEM file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load jwt private key: %w", err)
	}
	priv, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("load jwt private key from %s: %w", path, err)
	}
	return priv, nil
}

// WriteKeyPair generates a new Ed25519 key pair and writes the private key to
// privPath (mode 0600) and the public key to pubPath (mode 0644). Existing
// files are not overwritten, so a slip cannot destroy the key that signed
// every live token.
func WriteKeyPair(privPath, pubPath string) (ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate jwt key pair: %w", err)
	}
	privPEM, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		return nil, err
	}
	pubPEM, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		return nil, err
	}
	if err := writeNew(privPath, privPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write jwt private key: %w", err)
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write jwt public key: %w", err)
	}
	return priv, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
