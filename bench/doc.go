// Package bench holds the go test benchmarks of the quorumlock client
// against real redis-server processes on loopback, next to the baseline
// they are judged by (package floor: a hand-written go-redis Redlock that
// returns at quorum).
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// Sub-packages: latency (a concurrent histogram), chart (PNG charts with
// the standard library), floor (the baseline). The side-by-side comparison
// with redsync and bsm/redislock lives in its own module, bench/compare,
// so the library's go.mod stays lean; `make -C bench results` regenerates
// bench/RESULTS.md.
package bench
