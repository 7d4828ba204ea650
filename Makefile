# quorumlock — the two commands a newcomer needs:
#   make bench   the benchmark tool on an embedded default fleet
#   make test    every test (unit, real redis-server processes, containers)

GO      ?= go
IMAGE   ?= quorumlock/redis:local
export QUORUMLOCK_REDIS_IMAGE ?= $(IMAGE)

.PHONY: test bench deps image fmt vet race results fuzz

## deps: install redis-server (Debian/Ubuntu) when missing
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null; }

## image: build the local redis-server image (no registry needed)
image: deps
	@bash docker/build-local-image.sh

## test: everything, with the race detector
test: deps image
	cd bench/compare && $(GO) vet ./... && $(GO) build -o /dev/null .
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...

## bench: the main job — lock latency/throughput on an embedded fleet
## (redis-server processes; in-process servers if it cannot be installed)
bench:
	@$(MAKE) -s deps || echo "make bench: redis-server could not be installed: the tool falls back to in-process servers"
	$(GO) run ./cmd/redlock bench

## results: regenerate bench/RESULTS.md (peer comparison, quiet machine wanted)
results: deps
	$(MAKE) -C bench results

## fuzz: run each fuzz target for a while (seed corpora also run in `make test`)
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseAddress -fuzztime=60s ./redlock/
	$(GO) test -run='^$$' -fuzz=FuzzConfigValidate -fuzztime=60s ./redlock/
	$(GO) test -run='^$$' -fuzz=FuzzResource -fuzztime=60s ./redlock/
