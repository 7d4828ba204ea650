# quorumlock — the two commands a newcomer needs:
#   make bench   the benchmark tool on an embedded default fleet
#   make test    every check of every module: gofmt, vet, lint, builds for
#                linux/darwin/windows, and every test with the race detector
#                (unit, real redis-server processes, containers)

GO      ?= go
IMAGE   ?= quorumlock/redis:local
export QUORUMLOCK_REDIS_IMAGE ?= $(IMAGE)

# Every module of the repository. The root is the library; the others carry
# what only tools, test helpers and suites need (go.work ties them together
# for development; each also builds on its own, which is how they are checked).
MODULES := . redlocktest cmd/redlock integration bench/compare metrics/prometheus metrics/otel
# Each module is checked against its own go.mod and go.sum, as its users get it.
export GOWORK := off

GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT ?= $(shell command -v golangci-lint 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/golangci-lint)

# The most modules a program that imports only redlock may find in its go.sum.
# 13 is the floor the design's dependencies set: go-redis v9.23 (its go.mod
# requires ginkgo, gomega, xxhash, xxh3, cpuid, atomic, x/sys; atomic brings
# testify and yaml), puddle (x/sync), consistent. The library's own tests use
# nothing beyond these (internal/leakcheck instead of goleak).
LEAN_MAX ?= 13

.PHONY: test bench deps image fmt vet lint cross lean release-check unit modules results fuzz fleet

## modules: print the module directories (for CI scripts)
modules:
	@echo $(MODULES)

## deps: install redis-server (Debian/Ubuntu) when missing
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null; }

## image: build the local redis-server image (no registry needed)
image: deps
	@bash docker/build-local-image.sh

## test: everything, with the race detector (go vet runs in cross, for
## every GOOS)
test: fmt lint cross lean release-check deps image unit

## unit: go test -race in every module (each module's tests run even when
## an earlier module failed; the target fails if any did)
unit:
	@failed=""; for m in $(MODULES); do \
	  echo "== go test -race $$m"; \
	  (cd $$m && $(GO) test -race -count=1 -timeout 15m ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "make unit: FAILED in:$$failed"; exit 1; fi

## fmt: every Go file is gofmt-formatted
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## vet: go vet in every module
vet:
	@for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && $(GO) vet ./...) || exit 1; done

## lint: golangci-lint (.golangci.yml) in every module; installed when missing
lint:
	@test -x "$(GOLANGCI_LINT)" || { \
	  echo "installing golangci-lint $(GOLANGCI_LINT_VERSION)"; \
	  $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); }
	@for m in $(MODULES); do echo "== golangci-lint $$m"; \
	  (cd $$m && $(GOLANGCI_LINT) run --allow-parallel-runners --config $(CURDIR)/.golangci.yml ./...) || exit 1; done

## cross: every package (tests included) of every module type-checks and
## vets for linux, darwin and windows (go vet compiles what go build would,
## and the test files too)
cross:
	@for m in $(MODULES); do for os in linux darwin windows; do \
	  echo "== GOOS=$$os $$m"; \
	  (cd $$m && GOOS=$$os $(GO) vet ./...) || exit 1; \
	done; done

## lean: count the modules in the go.sum of a program that imports only
## redlock (a throwaway module with a replace to this checkout)
lean:
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	printf 'package main\n\nimport "github.com/quorumlock/quorumlock/redlock"\n\nfunc main() { _, _ = redlock.New(redlock.Config{}) }\n' > $$d/main.go && \
	printf 'module example.com/lean\n\ngo 1.26.0\n\nrequire github.com/quorumlock/quorumlock v0.0.0\n\nreplace github.com/quorumlock/quorumlock => %s\n' "$(CURDIR)" > $$d/go.mod && \
	(cd $$d && $(GO) mod tidy >/dev/null && $(GO) build -o /dev/null .) && \
	n=$$(awk '{print $$1}' $$d/go.sum | sort -u | wc -l) && \
	echo "lean: a redlock-only program has $$n modules in its go.sum (at most $(LEAN_MAX))" && \
	test $$n -le $(LEAN_MAX)

## release-check: `go install …/cmd/redlock@latest` works from a release of
## this checkout (served by a module proxy in a temporary directory; see
## internal/release for how a release is made)
release-check:
	@$(GO) run ./internal/release -check

## bench: the main job — lock latency/throughput on an embedded fleet
## (redis-server processes; in-process servers if it cannot be installed)
bench:
	@$(MAKE) -s deps || echo "make bench: redis-server could not be installed: the tool falls back to in-process servers"
	cd cmd/redlock && $(GO) run . bench

## results: regenerate bench/RESULTS.md (peer comparison, quiet machine wanted)
results: deps
	$(MAKE) -C bench results

## fleet: the fleet simulation — the safety checker (Fencing on) over
## FLEET_GROUPS groups × 5 redis-server processes under random minority
## faults for FLEET_DURATION; prints the Markdown for bench/RESULTS.md
## (CI runs the same test at 10 groups for 6 s, with -race)
FLEET_GROUPS   ?= 100
FLEET_DURATION ?= 60s
fleet: deps
	cd integration && QUORUMLOCK_FLEET_GROUPS=$(FLEET_GROUPS) QUORUMLOCK_FLEET_DURATION=$(FLEET_DURATION) \
	  $(GO) test -count=1 -timeout 20m -run '^TestFleetSimulation$$' -v .

## fuzz: run each fuzz target for a while (seed corpora also run in `make test`)
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseAddress -fuzztime=60s ./redlock/
	$(GO) test -run='^$$' -fuzz=FuzzConfigValidate -fuzztime=60s ./redlock/
	$(GO) test -run='^$$' -fuzz=FuzzResource -fuzztime=60s ./redlock/
