// Package redlocktest starts fleets of independent Redis masters for tests of
// code that uses quorumlock's redlock package, and injects faults into single
// masters: crash, pause, network partition, restart with or without
// persistence.
//
// Two implementations share the Fleet and Master interfaces, so a test is
// written once:
//
//   - Start / StartT: one Docker container per master (testcontainers-go),
//     all on a Docker network the fleet creates. Closest to production;
//     needs a Docker daemon.
//   - StartProcesses / StartProcessesT: one redis-server child process per
//     master on 127.0.0.1. Needs only the redis-server binary; starts in
//     milliseconds.
//
// In a test:
//
//	func TestFailover(t *testing.T) {
//		fleet := redlocktest.StartT(t, 1, 5) // removed in t.Cleanup
//		client, err := redlock.New(fleet.Config())
//		...
//		fleet.Master(0, 3).Pause(t.Context())
//	}
//
// # Images
//
// The image of container fleets comes from one environment variable,
// QUORUMLOCK_REDIS_IMAGE (EnvImage). When it is unset: the official
// "redis:7" if the daemon has it, else "quorumlock/redis:local" if the
// daemon has it, else "redis:7" (pulled). So on a machine without an image
// registry, building the local image once (bash docker/build-local-image.sh,
// which packages the host's redis-server) is enough for a plain go test
// ./... to use it. WithImage overrides all of this.
//
// Start sets TESTCONTAINERS_RYUK_DISABLED=true and, for a local daemon,
// TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 when they are unset, before its
// first call into testcontainers-go (the reaper image cannot be pulled
// without a registry, and without the override testcontainers may dial a
// gateway address instead of loopback). Cleanup is Close's job: every
// container and the network carry the label LabelFleet=<fleet ID>, and
// LabelOwner=<host>/<pid> of the process that started them. A test killed
// by -timeout or Ctrl-C runs no cleanup; the next container fleet started
// removes what such runs left (fleets whose process on this host is gone,
// or older than ReapAge when that cannot be checked). By hand:
//
//	docker rm -f $(docker ps -aq --filter label=quorumlock.redlocktest.fleet); docker network prune -f --filter label=quorumlock.redlocktest.fleet
//
// # Missing Docker or redis-server
//
// StartT skips the test when no Docker daemon answers, with a message
// saying so — unless the environment variable CI is "true", where it fails
// the test. A missing redis-server binary always fails StartProcessesT: a
// suite must not pass by testing nothing.
//
// # What each fault looks like from the client (measured)
//
// Measured on a 2-core Linux host, Docker 20.10 (userland proxy), Redis
// 7.0.15, the image built by docker/build-local-image.sh:
//
//	fault        container fleet                       process fleet
//	Start 1×3    0.8–2 s (one-time setup included)     ~30 ms
//	Start 3×5    3–5 s (parallel; serial was 6–8 s)    ~0.1–0.4 s
//	Stop/Start   ~0.2 s / ~0.4 s; data lost           ~1 ms / ~15 ms; data lost
//	Pause        PING times out (i/o timeout): the     same (SIGSTOP)
//	             proxy and the kernel still accept
//	             the connection, nothing answers
//	Disconnect   new connections: "connection          same, by design
//	             refused" at once; established ones:
//	             EOF at once; data kept
//	Restart      persist=true keeps keys and TTLs;      same; ~15 ms
//	             persist=false loses them; ~0.6–1 s
//
// Disconnect, in detail: each container has exactly one network, the
// fleet's, and its port 6379 is published from it. "docker network
// disconnect" removes the container's endpoint, and with it the port
// mapping: Docker stops the proxy that listened on 127.0.0.1:<port>, which
// closes its established connections (EOF) and leaves the port refusing new
// ones. A partition on Docker is therefore a fast, loud failure, not a
// silent blackhole: a client does not wait for a timeout. (Keeping the
// default bridge as a second network for the published port would leave the
// host's traffic untouched by the partition; it would only cut
// container-to-container traffic.) "docker network connect" brings the
// mapping back on the same host port. Use Pause for a master that is
// reachable but silent, which is what a blackholed network looks like to a
// client. The process twin reproduces the Docker behaviour: it stops
// listening (CONFIG SET port 0) and kills every client connection, keeping
// only a private control connection to listen again on Reconnect.
//
// # Addresses
//
// With a local Docker daemon, every master is published on 127.0.0.1 at a
// free port chosen before the container is created, and Docker keeps that
// binding across stop/start and network disconnect/connect: an address
// never changes, and a Config taken once stays valid for the whole test. A
// process master keeps its port too. (With a remote daemon, Docker chooses
// the port and may choose another after a start: read Addr again.)
//
// # Persistence
//
// Masters run without persistence (--save "" --appendonly no), the usual
// setup of a lock fleet. Restart(ctx, true) gives the guarantee of
// "--appendonly yes --appendfsync always" for that restart: it pauses
// writes (CLIENT PAUSE WRITE, so nothing is acknowledged afterwards), SAVEs
// the dataset, kills the master and starts it again, and Redis loads the
// snapshot. Every write acknowledged before the call survives, TTLs
// included. The snapshot does not outlive that restart: a later Stop/Start
// or Restart(ctx, false) starts empty again.
package redlocktest
