# Strata: build, test, run and benchmark.
#
#   make run     start a local cluster in ./.strata (bin/strata local up: 3 safekeepers, a pageserver,
#                a primary from storage with its walproposer); bin/strata local down stops it
#   make test    every test, against real PostgreSQL 15 (installs what is missing first)
#   make bench   benchmarks, each printed as a ratio against the vanilla baseline of the same run
#
# The deps target installs what a fresh Debian machine lacks: PostgreSQL 15 with its server
# headers and protoc via apt-get (as root), Go modules, and the protoc Go plugins.

SHELL      := /bin/bash
GO         ?= go
PG_BINDIR  ?= /usr/lib/postgresql/15/bin
BIN        := $(CURDIR)/bin
GOBIN_DIR  := $(shell $(GO) env GOPATH)/bin
MODULES    := libs proto safekeeper pageserver cli test
PKGS       := $(foreach m,$(MODULES),./$(m)/...)
APT_PKGS   := postgresql-15 postgresql-server-dev-15 postgresql-contrib protobuf-compiler gcc make libc6-dev
# Per-package test timeout; the whole suite is kept well under 20 minutes on 2 cores.
TEST_TIMEOUT ?= 15m
TEST_FLAGS ?=
# Flags for `strata local up` (e.g. RUN_FLAGS="--pg-option shared_buffers=1GB").
RUN_FLAGS  ?=
BENCH_DIR  ?= $(CURDIR)/bench-results

export STRATA_BIN_DIR := $(BIN)
export STRATA_PG_BINDIR := $(PG_BINDIR)

.PHONY: all deps build test race run bench proto lint fmt clean

all: build

# ---------------------------------------------------------------------------------------------
deps: .deps-stamp
.deps-stamp: Makefile
	@missing=""; \
	[ -x $(PG_BINDIR)/postgres ] || missing="$$missing postgresql-15"; \
	[ -x $(PG_BINDIR)/pg_receivewal ] || missing="$$missing postgresql-15"; \
	[ -f /usr/include/postgresql/15/server/postgres.h ] || missing="$$missing postgresql-server-dev-15"; \
	[ -d /usr/share/postgresql/15/extension ] && [ -f /usr/lib/postgresql/15/lib/amcheck.so ] || missing="$$missing postgresql-contrib"; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	command -v gcc >/dev/null && command -v make >/dev/null || missing="$$missing gcc make libc6-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PKGS) </dev/null \
	    || { $$SUDO apt-get update </dev/null && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PKGS) </dev/null; }; \
	fi
	@# Debian's postgresql-common starts a cluster on install; Strata's tests never use it.
	@[ -x $(GOBIN_DIR)/protoc-gen-go ] || GOWORK=off $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	@[ -x $(GOBIN_DIR)/protoc-gen-go-grpc ] || GOWORK=off $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	@for m in $(MODULES); do (cd $$m && $(GO) mod download) || exit 1; done
	@touch $@

# ---------------------------------------------------------------------------------------------
build: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./safekeeper/cmd/... ./pageserver/cmd/... ./libs/walproposer/cmd/... ./cli/cmd/...
	@# The WAL-redo extension (C, PGXS); the pageserver loads it into its redo processes.
	$(MAKE) -s -C pageserver/pgxn/walredo PG_CONFIG=$(PG_BINDIR)/pg_config with_llvm=no
	cp pageserver/pgxn/walredo/walredo.so $(BIN)/walredo.so

test: build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $(PKGS)

# The unit tests under the race detector (~1 min on 2 CPUs; not in `test`, whose timing-based
# end-to-end tests it would slow down). For the daemons themselves: build them with -race into a
# directory and point the end-to-end tests at it with STRATA_BIN_DIR (README, "Testing").
race: build
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./libs/... ./safekeeper/... ./pageserver/... ./cli/...

run: build
	$(BIN)/strata local up $(RUN_FLAGS)

bench: build
	@mkdir -p $(BENCH_DIR)
	STRATA_BENCH_DIR=$(BENCH_DIR) $(GO) test -count=1 -timeout 60m -run '^$$' -bench . -benchtime 1x ./test/bench/...

proto: deps
	cd proto && PATH=$(GOBIN_DIR):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
	  $$(find . -name '*.proto' -printf '%P\n')

lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $(MODULES)

clean:
	rm -rf $(BIN) .deps-stamp $(BENCH_DIR)
	$(MAKE) -s -C pageserver/pgxn/walredo PG_CONFIG=$(PG_BINDIR)/pg_config with_llvm=no clean
