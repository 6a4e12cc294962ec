// Package pageserver will turn safekeeper WAL into versioned pages (see
// ../shared/spec/pageserver.md). It is an empty module until the pageserver
// issues land; it exists so the workspace layout of DESIGN.md is complete.
package pageserver
