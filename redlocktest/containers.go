package redlocktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	dnetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	// EnvImage is the environment variable that names the Redis image of
	// container fleets, e.g. "redis:7" or "quorumlock/redis:local".
	EnvImage = "QUORUMLOCK_REDIS_IMAGE"
	// DefaultImage is the image used when EnvImage is unset: the official one.
	DefaultImage = "redis:7"
	// LocalImage is the image docker/build-local-image.sh builds from the
	// host's redis-server, for machines without an image registry. It is the
	// fallback when EnvImage is unset and DefaultImage is not present locally.
	LocalImage = "quorumlock/redis:local"
	// LabelFleet is the label on every container and network a container
	// fleet creates; its value is the fleet's ID.
	LabelFleet = "quorumlock.redlocktest.fleet"
	// LabelMaster is the label holding a container's master name ("g0m1").
	LabelMaster = "quorumlock.redlocktest.master"
)

// ErrDockerUnavailable is returned (wrapped) by Start when no Docker daemon
// answers. StartT skips the test on it, except in CI (CI=true), where it fails.
var ErrDockerUnavailable = errors.New("redlocktest: Docker daemon not available")

// redisPort is the port Redis listens on inside every container.
const redisPort = "6379/tcp"

// redisArgs is the command line of every master: no persistence (Restart
// adds it on demand), data directory /data (the official image's WORKDIR and
// the local image's).
var redisArgs = []string{
	"--bind", "0.0.0.0", "--protected-mode", "no",
	"--save", "", "--appendonly", "no",
	"--dir", "/data", "--dbfilename", "dump.rdb",
}

// ContainerFleet is a Fleet of Redis containers started with
// testcontainers-go, all on one Docker network the fleet creates, each
// master's port 6379 published on the Docker host.
//
// With a local daemon (the usual case) each master is published on
// 127.0.0.1 at a free port chosen up front, so its address never changes:
// not across Stop/Start, Restart, or Disconnect/Reconnect, and a Config
// taken once stays valid. With a remote daemon (DOCKER_HOST=tcp://…) Docker
// picks the host port and it may change when a master starts again: take
// Config or Addr again after Start, Restart or Reconnect.
//
// The faults, container by container:
//
//   - Stop: "docker stop -t 0" (SIGKILL right away). Start: "docker start"
//     and wait until Redis answers PING (the published port alone proves
//     nothing: Docker's proxy accepts connections before Redis listens).
//   - Pause/Unpause: "docker pause/unpause" (cgroup freezer): connections
//     are still accepted, nothing answers, commands time out.
//   - Disconnect/Reconnect: "docker network disconnect/connect" from the
//     fleet's network, which also carries the published port: Docker
//     removes the port mapping, so from the host new connections are refused
//     and established ones are closed, while the container keeps running
//     with its data. Other containers on the fleet network lose it as well.
//     Reconnect attaches it again (same alias); the mapping comes back.
//   - Restart(persist): see Master. The snapshot lives in the container's
//     /data and a later plain Start replaces it with an empty one.
type ContainerFleet struct {
	fleet
	id       string
	provider *testcontainers.DockerProvider
	network  *testcontainers.DockerNetwork
	ctrs     []*testcontainers.DockerContainer

	closeOnce sync.Once
	closeErr  error
}

var _ Fleet = (*ContainerFleet)(nil)

// Start starts groups × masters Redis containers in parallel on a new Docker
// network and waits until every master answers PING. The image is, in
// order: WithImage, $QUORUMLOCK_REDIS_IMAGE, redis:7 when present locally,
// quorumlock/redis:local when present locally, else redis:7 (pulled).
//
// Before its first call into testcontainers-go it sets, when unset,
// TESTCONTAINERS_RYUK_DISABLED=true (the reaper image may not be pullable;
// Close and StartT's cleanup remove everything instead) and, for a local
// daemon, TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 (otherwise testcontainers
// may dial a gateway address when the tests run inside a container).
//
// On error, everything already created is removed. Call Close when done
// (StartT does it for a test).
func Start(ctx context.Context, groups, masters int, opts ...Option) (*ContainerFleet, error) {
	if err := checkShape(groups, masters); err != nil {
		return nil, err
	}
	o := buildOptions(opts, 60*time.Second)
	setTestcontainersEnv()

	var popts []testcontainers.DockerProviderOption
	if o.tb != nil {
		popts = append(popts, testcontainers.WithLogger(tclog.TestLogger(o.tb)))
	}
	provider, err := testcontainers.NewDockerProvider(popts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDockerUnavailable, err)
	}
	if err := provider.Health(ctx); err != nil {
		_ = provider.Close()
		return nil, fmt.Errorf("%w: %w", ErrDockerUnavailable, err)
	}
	// Fleets that earlier runs left (a test killed by -timeout or Ctrl-C
	// runs no cleanup) go first; a failure here never fails the start.
	removed, reapErr := reapLeftovers(ctx, provider.Client())
	if o.tb != nil && (len(removed) > 0 || reapErr != nil) {
		o.tb.Logf("redlocktest: removed %d leftovers of earlier runs %v (errors: %v)", len(removed), removed, reapErr)
	}
	f := &ContainerFleet{id: newID(), provider: provider}
	if err := f.start(ctx, groups, masters, o); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// StartT is Start for a test. It closes the fleet in t.Cleanup, so the
// containers and the network are removed even when the test fails. When no
// Docker daemon answers, it skips the test with a clear message, unless the
// environment variable CI is true: in CI it fails the test. Any other error
// fails the test.
func StartT(tb testing.TB, groups, masters int, opts ...Option) *ContainerFleet {
	tb.Helper()
	opts = append(opts, func(o *options) { o.tb = tb })
	f, err := Start(tb.Context(), groups, masters, opts...)
	if err != nil {
		if skipOn(err) {
			tb.Skipf("skipping: %v (with CI=true this fails the test)", err)
		}
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return f
}

// skipOn tells whether StartT skips on a Start error rather than failing:
// only for a missing Docker daemon, and never in CI.
func skipOn(err error) bool { return errors.Is(err, ErrDockerUnavailable) && !inCI() }

// ID is the fleet's random identifier, the value of the LabelFleet label on
// everything it created.
func (f *ContainerFleet) ID() string { return f.id }

// Network is the name of the fleet's Docker network. Containers a test adds
// to it reach master i of group g as "g<g>m<i>:6379".
func (f *ContainerFleet) Network() string { return f.network.Name }

// Container returns the container of master i of group g, for what this
// package does not wrap (logs, exec, inspect).
func (f *ContainerFleet) Container(g, i int) *testcontainers.DockerContainer {
	return f.masters[g][i].b.(*redisContainer).ctr
}

// Close removes every container and the network, in parallel, and releases
// the Docker client. Later calls return the first call's result.
func (f *ContainerFleet) Close() error {
	f.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		errs := make([]error, len(f.ctrs))
		var wg sync.WaitGroup
		for n, c := range f.ctrs {
			if c == nil {
				continue
			}
			wg.Go(func() {
				if err := c.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil {
					errs[n] = fmt.Errorf("redlocktest: remove container %s: %w", c.ID, err)
				}
			})
		}
		wg.Wait()
		if f.network != nil {
			if err := f.network.Remove(ctx); err != nil {
				errs = append(errs, fmt.Errorf("redlocktest: remove network %s: %w", f.network.Name, err))
			}
		}
		errs = append(errs, f.provider.Close())
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

func (f *ContainerFleet) start(ctx context.Context, groups, masters int, o options) error {
	image, local := resolveImage(ctx, f.provider.Client(), o.image)
	host, err := f.provider.DaemonHost(ctx)
	if err != nil {
		return fmt.Errorf("redlocktest: find the Docker host: %w", err)
	}
	// A daemon reached over a unix socket is local, whatever DaemonHost
	// guessed (testcontainers falls back to the default socket when a
	// tcp:// DOCKER_HOST does not answer, and may then name a gateway).
	if strings.HasPrefix(f.provider.Client().DaemonHost(), "unix://") {
		host = "127.0.0.1"
	}
	// A local daemon: publish on loopback at fixed ports (stable addresses).
	// A remote one: let it pick, and read the port after every start.
	fixed := isLoopback(host)
	if fixed {
		host = "127.0.0.1"
	}
	f.network, err = network.New(ctx, network.WithLabels(map[string]string{LabelFleet: f.id, LabelOwner: o.owner()}))
	if err != nil {
		return fmt.Errorf("redlocktest: create the fleet network: %w", err)
	}

	f.ctrs = make([]*testcontainers.DockerContainer, groups*masters)
	f.masters = make([][]*master, groups)
	var ports []int
	if fixed {
		if ports, err = freePorts(len(f.ctrs)); err != nil {
			return err
		}
	}
	errs := make([]error, len(f.ctrs))
	var wg sync.WaitGroup
	for g := range f.masters {
		f.masters[g] = make([]*master, masters)
		for i := range f.masters[g] {
			n := g*masters + i
			rc := &redisContainer{fleet: f, alias: masterName(g, i), host: host}
			f.masters[g][i] = &master{name: rc.alias, b: rc, timeout: o.startTimeout}
			port := 0
			if fixed {
				port = ports[n]
			}
			wg.Go(func() {
				errs[n] = rc.create(ctx, image, port, o)
				f.ctrs[n] = rc.ctr
			})
		}
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err != nil && !local {
		err = fmt.Errorf("%w\n(the Docker daemon had no image %s and had to pull it: without a registry, "+
			"build one with `bash docker/build-local-image.sh` and set %s=%s)", err, image, EnvImage, LocalImage)
	}
	return err
}

// redisContainer is the backend of one master container.
type redisContainer struct {
	fleet *ContainerFleet
	alias string // the master's name, also its alias on the fleet network
	host  string
	ctr   *testcontainers.DockerContainer
	hostP atomic.Pointer[string] // "host:port"
}

func (rc *redisContainer) create(ctx context.Context, image string, port int, o options) error {
	// A fixed port chosen free may be taken before Docker binds it: retry
	// with another one.
	for attempt := 0; ; attempt++ {
		opts := []testcontainers.ContainerCustomizer{
			testcontainers.WithName(fmt.Sprintf("quorumlock-%s-%s", rc.fleet.id, rc.alias)),
			testcontainers.WithCmd(redisArgs...),
			testcontainers.WithExposedPorts(redisPort),
			testcontainers.WithLabels(map[string]string{LabelFleet: rc.fleet.id, LabelMaster: rc.alias, LabelOwner: o.owner()}),
			network.WithNetwork([]string{rc.alias}, rc.fleet.network),
			testcontainers.WithWaitStrategyAndDeadline(o.startTimeout,
				wait.ForListeningPort(redisPort).SkipInternalCheck(), pingReady{o.startTimeout}),
		}
		if port != 0 {
			opts = append(opts, testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
				hc.PortBindings = dnetwork.PortMap{
					dnetwork.MustParsePort(redisPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}},
				}
			}))
		}
		if o.tb != nil {
			opts = append(opts, testcontainers.WithLogger(tclog.TestLogger(o.tb)))
		}
		ctr, err := testcontainers.Run(ctx, image, opts...)
		if err == nil {
			rc.ctr = ctr
			return rc.readAddr(ctx)
		}
		if ctr != nil {
			_ = ctr.Terminate(context.WithoutCancel(ctx), testcontainers.StopTimeout(0))
		}
		if port == 0 || attempt == 4 || !isPortConflict(err) {
			return fmt.Errorf("redlocktest: start master %s from image %s: %w", rc.alias, image, err)
		}
		p, perr := freePorts(1)
		if perr != nil {
			return perr
		}
		port = p[0]
	}
}

// readAddr reads the published port (it changes on every start only when
// Docker picked it).
func (rc *redisContainer) readAddr(ctx context.Context) error {
	p, err := rc.ctr.MappedPort(ctx, redisPort)
	if err != nil {
		return fmt.Errorf("read the published port of %s: %w", rc.alias, err)
	}
	addr := net.JoinHostPort(rc.host, p.Port())
	rc.hostP.Store(&addr)
	return nil
}

func (rc *redisContainer) addr() string {
	if p := rc.hostP.Load(); p != nil {
		return *p
	}
	return rc.alias
}

func (rc *redisContainer) kill(ctx context.Context) error {
	var zero time.Duration
	return rc.ctr.Stop(ctx, &zero)
}

func (rc *redisContainer) start(ctx context.Context) error {
	if err := rc.ctr.Start(ctx); err != nil {
		return err
	}
	return rc.readAddr(ctx)
}

func (rc *redisContainer) freeze(ctx context.Context) error {
	_, err := rc.fleet.provider.Client().ContainerPause(ctx, rc.ctr.ID, client.ContainerPauseOptions{})
	return err
}

func (rc *redisContainer) thaw(ctx context.Context) error {
	_, err := rc.fleet.provider.Client().ContainerUnpause(ctx, rc.ctr.ID, client.ContainerUnpauseOptions{})
	return err
}

func (rc *redisContainer) cut(ctx context.Context) error {
	_, err := rc.fleet.provider.Client().NetworkDisconnect(ctx, rc.fleet.network.ID,
		client.NetworkDisconnectOptions{Container: rc.ctr.ID})
	return err
}

func (rc *redisContainer) heal(ctx context.Context, running bool) error {
	_, err := rc.fleet.provider.Client().NetworkConnect(ctx, rc.fleet.network.ID, client.NetworkConnectOptions{
		Container:      rc.ctr.ID,
		EndpointConfig: &dnetwork.EndpointSettings{Aliases: []string{rc.alias}},
	})
	if err != nil || !running {
		return err
	}
	return rc.readAddr(ctx)
}

func (rc *redisContainer) wipe(ctx context.Context) error {
	return rc.ctr.CopyToContainer(ctx, emptyRDB, "/data/dump.rdb", 0o644)
}

// pingReady is a wait strategy: Redis answers PING on the published port.
type pingReady struct{ timeout time.Duration }

func (p pingReady) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	host, err := target.Host(ctx)
	if err != nil {
		return err
	}
	port, err := target.MappedPort(ctx, redisPort)
	if err != nil {
		return err
	}
	return waitPing(ctx, net.JoinHostPort(host, port.Port()), p.timeout)
}

var envOnce sync.Once

// setTestcontainersEnv sets the two variables testcontainers-go needs on
// machines without a registry, unless the user set them.
func setTestcontainersEnv() {
	envOnce.Do(func() {
		if _, ok := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !ok {
			_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
		}
		// Only for a local daemon: a remote DOCKER_HOST publishes ports on
		// its own address, which testcontainers derives from DOCKER_HOST.
		dh := os.Getenv("DOCKER_HOST")
		if _, ok := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); !ok && (dh == "" || strings.HasPrefix(dh, "unix://")) {
			_ = os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
		}
	})
}

// resolveImage picks the image: explicit, $QUORUMLOCK_REDIS_IMAGE, the
// official image if present, the local one if present, else the official
// one (to be pulled). local tells whether the daemon already has it.
func resolveImage(ctx context.Context, api client.APIClient, explicit string) (ref string, local bool) {
	present := func(ref string) bool {
		_, err := api.ImageInspect(ctx, ref)
		return err == nil
	}
	if explicit == "" {
		explicit = os.Getenv(EnvImage)
	}
	if explicit != "" {
		return explicit, present(explicit)
	}
	for _, ref := range []string{DefaultImage, LocalImage} {
		if present(ref) {
			return ref, true
		}
	}
	return DefaultImage, false
}

func isPortConflict(err error) bool {
	s := err.Error()
	return strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (all listened on
// at once, then released).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("redlocktest: pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
