package redlock

import (
	"context"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// TestNoScriptRetryKeepsOrder: a pipeline holds a LockAll acquire and,
// behind it, its release (the caller gave up before the writer sent the
// acquire). The acquire's script is unknown to the master (SCRIPT FLUSH)
// while the release's is known (another client's EVAL loaded it): the
// acquire answers NOSCRIPT and is retried as EVAL after the pipeline — after
// the release ran. The release must still follow the acquire: no key may
// be left on the master.
func TestNoScriptRetryKeepsOrder(t *testing.T) {
	s, nd := flushedMaster(t)
	ctx := context.Background()
	if _, err := s.Do(ctx, "SCRIPT", "LOAD", multiReleaseScriptSrc); err != nil {
		t.Fatal(err)
	}
	keys := []string{"ns:a", "ns:b"}
	out := make(chan reply, 2)
	deadline := time.Now().Add(time.Minute)
	acq := &call{op: opMultiAcquire, idx: 0, key: keys[0], token: "tok", deadline: deadline, out: out,
		args: &cmdArgs{key: keys[0], token: "tok", ttl: 60000, keys: keys}}
	rel := &call{op: opMultiRelease, idx: 1, key: keys[0], token: "tok", deadline: deadline, out: out, keepFor: time.Minute,
		args: &cmdArgs{key: keys[0], token: "tok", keys: keys}}
	runPipeline(t, nd, out, acq, rel)
	for _, k := range keys {
		if v := keyOn(t, s, k); v != "" {
			t.Errorf("%s = %q left on the master: the release ran before the acquire's NOSCRIPT retry", k, v)
		}
	}
}

// TestNoScriptPlainScriptsLoaded: after SCRIPT FLUSH, a plain lock's
// extend pipelined with its own release both answer NOSCRIPT; the extend is
// not resent (its release ran) and its script — the plain lock's own, not
// a scripted kind's — is loaded for the next use (this panicked).
func TestNoScriptPlainScriptsLoaded(t *testing.T) {
	s, nd := flushedMaster(t)
	ctx := context.Background()
	out := make(chan reply, 2)
	deadline := time.Now().Add(time.Minute)
	ext := &call{op: opExtend, idx: 0, key: "np", token: "tok", deadline: deadline, out: out,
		args: &cmdArgs{key: "np", token: "tok", ttl: 60000}}
	rel := &call{op: opRelease, idx: 1, key: "np", token: "tok", deadline: deadline, out: out,
		args: &cmdArgs{key: "np", token: "tok"}}
	runPipeline(t, nd, out, ext, rel)
	if v, err := s.Do(ctx, "SCRIPT", "EXISTS", releaseScript.Hash(), extendScript.Hash()); err != nil || v == "" {
		t.Fatalf("SCRIPT EXISTS: %q %v", v, err)
	}
}

// flushedMaster starts one master and a client of it, and empties the
// master's script cache (SCRIPT FLUSH); it returns the master and the
// client's node for it.
func flushedMaster(t *testing.T) (*redisproc.Server, *node) {
	t.Helper()
	f := fleet(t, 1, 1)
	s := f[0][0]
	c := newClient(t, clusterConfig(f))
	if _, err := s.Do(context.Background(), "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	return s, c.nodes[0]
}

// runPipeline sends calls to nd as one pipeline, on one connection, and
// waits for their replies on out.
func runPipeline(t *testing.T, nd *node, out <-chan reply, calls ...*call) {
	t.Helper()
	res, err := nd.pool.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	nd.run(res, calls)
	for range calls {
		<-out
	}
}
