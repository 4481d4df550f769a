# proxypool — see README.md. Every target is safe to run on a fresh Debian machine.
SHELL        := /bin/bash
GO           ?= go
export CGO_ENABLED := 1
BIN          := bin
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0)
LDFLAGS      := -s -w -X main.version=$(VERSION)
FUZZTIME     ?= 10s

.PHONY: all build run test test-go vet fuzz bench bench-probe bench-gateway bench-store bench-weighted bench-checks deb deps e2e clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The whole stack in the foreground: a demo fleet of local upstreams, then
# proxypoold run with ./etc/proxypool/proxypool.yaml (store under ./var).
run: build
	@scripts/run.sh

# Everything CI runs (.ci/run calls exactly this).
test:
	@scripts/test.sh

# Only the Go part (no apt, no packaging, no container): quick local loop.
test-go: vet
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

deps:
	@scripts/deps.sh

# Longer fuzzing of every target: make fuzz FUZZTIME=5m
fuzz:
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench: bench-store bench-probe bench-gateway bench-weighted bench-checks

# BenchmarkGatewayProcess100k runs the real gateway binary on a 100k store.
bench-store: build
	PROXYPOOL_GATEWAY_BIN=$(CURDIR)/$(BIN)/proxypoold $(GO) test -run '^$$' -bench . -benchtime 2x ./internal/store/

bench-probe:
	@scripts/bench-probe.sh

bench-gateway:
	@scripts/bench-gateway.sh

# share of requests per speed tier, weighted vs round-robin, through the gateway
bench-weighted:
	$(GO) test -count=1 -run '^TestWeightedSharesByTier$$' -v ./internal/gateway/

# Target and speed checks on 2,000 fleet upstreams beside a liveness pass.
bench-checks:
	$(GO) test -run '^$$' -bench BenchmarkChecksBesideLiveness -benchtime 1x ./internal/checks/

# dist/proxypool_<version>_<arch>.deb (builds PIE binaries itself; nfpm
# v2.45.0 installed if missing; lintian when installed).
deb:
	@packaging/deb.sh

# The packaged-install levels: verify/security on the .deb, then (root) a
# booted Debian in systemd-nspawn (test/e2e/nspawn.sh; see its header).
e2e: deb
	@test/e2e/verify.sh dist/proxypool_*.deb
	@test/e2e/nspawn.sh dist/proxypool_*.deb

clean:
	rm -rf $(BIN) dist var
