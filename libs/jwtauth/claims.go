// Package jwtauth verifies the JSON Web Tokens that clients present on the
// libpq ports of the safekeeper and the pageserver (SK §1.3).
//
// Tokens are signed with EdDSA over Ed25519 and carry a scope and, for
// tenant-scoped tokens, the one tenant they grant access to. A Verifier holds
// every public key an operator configured (one PEM file or a directory of
// them) and accepts a token signed by any of them: that is how keys are
// rotated without downtime. The private side (Sign, key generation) lives here
// too because tests and operator tooling need to mint tokens the daemons
// accept.
package jwtauth

import (
	"errors"
	"fmt"

	"strata.dev/libs/id"
)

// ErrUnauthorized is wrapped by every error that means "this token does not
// grant that": callers branch on it to answer with a permission error rather
// than an internal one.
var ErrUnauthorized = errors.New("unauthorized")

// Scope says what a token grants. The strings are Neon's, so tokens minted by
// Neon tooling work unchanged.
type Scope string

const (
	// ScopeTenant grants access to the one tenant named in the token.
	ScopeTenant Scope = "tenant"
	// ScopeSafekeeperData grants access to every tenant's data on safekeepers.
	ScopeSafekeeperData Scope = "safekeeperdata"
	// ScopePageServerAPI grants access to every tenant's data on pageservers.
	ScopePageServerAPI Scope = "pageserverapi"
	// ScopeAdmin grants the management APIs.
	ScopeAdmin Scope = "admin"
	// ScopeGenerationsAPI is the storage controller's generation API.
	ScopeGenerationsAPI Scope = "generations_api"
	// ScopeInfra is infrastructure automation.
	ScopeInfra Scope = "infra"
	// ScopeScrubber is the storage scrubber.
	ScopeScrubber Scope = "scrubber"
	// ScopeControllerPeer is one storage controller talking to another.
	ScopeControllerPeer Scope = "controller_peer"
	// ScopeTenantEndpoint grants one compute endpoint of a tenant.
	ScopeTenantEndpoint Scope = "tenantendpoint"
)

// Valid reports whether s is one of the scopes above. Tokens with any other
// scope are rejected outright, as Neon's strict deserialisation does.
func (s Scope) Valid() bool {
	switch s {
	case ScopeTenant, ScopeSafekeeperData, ScopePageServerAPI, ScopeAdmin, ScopeGenerationsAPI,
		ScopeInfra, ScopeScrubber, ScopeControllerPeer, ScopeTenantEndpoint:
		return true
	}
	return false
}

// Claims is what a verified token says about its bearer.
type Claims struct {
	Scope Scope `json:"scope"`
	// TenantID is nil when the token is not bound to a tenant (JSON null or absent).
	TenantID *id.TenantID `json:"tenant_id"`
	// EndpointID is set only for tenantendpoint tokens.
	EndpointID string `json:"endpoint_id,omitempty"`
}

// CheckLogin applies the rules that hold for the whole connection, right after
// the token is verified (SK §1.3 step 4). On a tenant-only port (the one
// computes are pointed at) nothing but tenant tokens is accepted. A tenant
// token that names no tenant is useless everywhere and is rejected so that the
// per-query check never sees one.
func CheckLogin(c Claims, tenantOnly bool) error {
	if tenantOnly && c.Scope != ScopeTenant {
		return fmt.Errorf("%w: token scope is %q, but only %q scope is allowed on this port",
			ErrUnauthorized, c.Scope, ScopeTenant)
	}
	if c.Scope == ScopeTenant && c.TenantID == nil {
		return fmt.Errorf("%w: token scope is %q, but tenant_id is missing", ErrUnauthorized, c.Scope)
	}
	return nil
}

// CheckTenant is the safekeeper's per-command permission check, made once the
// command's tenant is known: safekeeperdata tokens may touch any tenant,
// tenant tokens only their own, and every other scope nothing at all.
func CheckTenant(c Claims, tenant id.TenantID) error {
	switch c.Scope {
	case ScopeSafekeeperData:
		return nil
	case ScopeTenant:
		if c.TenantID == nil {
			return fmt.Errorf("%w: tenant token has no tenant_id", ErrUnauthorized)
		}
		if *c.TenantID != tenant {
			return fmt.Errorf("%w: token is for tenant %s, not %s", ErrUnauthorized, c.TenantID, tenant)
		}
		return nil
	default:
		return fmt.Errorf("%w: scope %q is ineligible for Safekeeper auth", ErrUnauthorized, c.Scope)
	}
}
