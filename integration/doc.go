// Package integration holds the suites that exercise the rules of the
// Redlock algorithm (DESIGN.md) under real faults, on containerized Redis
// masters (redlocktest container fleets), plus a safety checker
// (subpackage safety) that runs many holders in several OS processes while
// a minority of every quorum group is killed, paused, partitioned and
// restarted.
//
// Run them with Docker available:
//
//	go test -race ./integration/...
//
// Without a Docker daemon the container suites skip, unless CI=true, where
// they fail. Without a registry, build the local image first
// (bash docker/build-local-image.sh); redlocktest picks it up.
package integration
