# harbormaster — see README.md. `make demo` and `make test` are the two commands.
GO ?= go
BIN := bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
# The build's version: the nearest tag (git describe), or 0.0.0-<commit>
# before the first one; -dirty when the tree has local changes.
VERSION ?= $(shell (git describe --tags --dirty 2>/dev/null || echo 0.0.0-$$(git describe --always --dirty 2>/dev/null || echo unknown)) | sed 's/^v//')
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X github.com/harbormaster/harbormaster/internal/version.version=$(VERSION) -X github.com/harbormaster/harbormaster/internal/version.commit=$(COMMIT)

.PHONY: all build test demo demo-loopback loopback-certs bench proto deps vet fmt clean fuzz fuzz-smoke golden-datadir keepalived-golden

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/harbormaster ./cmd/harbormaster
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/harbormaster-lab ./cmd/harbormaster-lab

# deps installs what the tests need and is missing (Debian packages).
deps:
	@scripts/deps.sh

# The lab scenarios measure failover timings, so they run alone, after the
# unit and in-process tests (which would otherwise compete for the 2 cores).
test: deps build vet loopback-certs
	HM_BIN=$(CURDIR)/$(BIN)/harbormaster $(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /chaos/scenario)
	HM_BIN=$(CURDIR)/$(BIN)/harbormaster $(GO) test -race -count=1 -timeout 10m ./chaos/scenario/
	FUZZTIME=300x GO=$(GO) scripts/fuzz.sh
# (make test fuzzes every target for 300 executions: a count, not a time,
# because a -fuzztime of seconds on a busy machine can end in the fuzz
# engine's own "context deadline exceeded" with no failing input.)

vet:
	$(GO) vet ./...

# fuzz runs every fuzz target (each func Fuzz... in a _test.go file) for
# FUZZTIME, one after the other; fuzz-smoke runs each for 3 s. A failing
# input lands in the package's testdata/fuzz/<FuzzName>/: commit it with
# the fix as a regression seed.
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

fuzz-smoke:
	FUZZTIME=3s GO=$(GO) scripts/fuzz.sh

# keepalived-golden rewrites testdata/keepalived/*.golden (the output of
# harbormaster import keepalived on each sample) after a deliberate change.
keepalived-golden:
	$(GO) test ./internal/kaimport -run 'TestImport$$' -count=1 -update

# demo: a VIP failover live in network namespaces (root). demo-loopback: the
# Raft-only demo on 127.0.0.1 (no root needed).
demo: deps build
	@$(BIN)/harbormaster-lab demo --bin $(CURDIR)/$(BIN)/harbormaster

demo-loopback: build loopback-certs
	@scripts/demo.sh

# loopback-certs writes testdata/loopback/tls/ (the CA, n1-n3 and the read,
# operate and admin operator certificates; idempotent, ignored by git).
loopback-certs: build
	@HM_BIN=$(CURDIR)/$(BIN)/harbormaster scripts/loopback-certs.sh

# bench: Raft leader failover on loopback, the VIP table against keepalived
# and the Redis table against Redis Sentinel in the namespace lab, and mutual
# TLS against insecure: true (crash-holder failover, idle CPU) (root; about
# an hour and ten minutes). docs/bench-*.md
# hold the committed runs.
bench: deps build
	$(GO) run ./chaos/cmd/bench-leader --bin $(CURDIR)/$(BIN)/harbormaster --trials 20
	$(GO) run ./chaos/cmd/bench-vip --bin $(CURDIR)/$(BIN)/harbormaster --trials 20 --timeout 45m
	$(GO) run ./chaos/cmd/bench-redis --bin $(CURDIR)/$(BIN)/harbormaster --trials 10 --timeout 60m
	$(GO) run ./chaos/cmd/bench-redis --bin $(CURDIR)/$(BIN)/harbormaster --clients --listener-vips --trials 5 --timeout 60m
	$(GO) run ./chaos/cmd/bench-tls --bin $(CURDIR)/$(BIN)/harbormaster --trials 20
	$(GO) run ./chaos/cmd/bench-durability --rounds 9 --bin $(CURDIR)/$(BIN)/harbormaster --trials 5

# proto regenerates proto/harbormaster/v1/*.pb.go with pinned generators.
proto:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(GOBIN_DIR):$$PATH protoc --proto_path=proto \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/harbormaster/v1/admin.proto

# golden-datadir rewrites testdata/golden/datadir-v1 (an agent's data dir:
# raft.db, a snapshot, commands after it, the cluster id) and the state it
# restores to, from an in-process agent. Only for a new format: keep v1 and
# add v2 beside it (agent/datadir_golden_test.go).
golden-datadir:
	$(GO) test -count=1 -run TestGoldenDataDir ./agent -update-datadir

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
