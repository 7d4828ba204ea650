package redlock

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// ringDigest is the xxhash of a ring's whole partition table, and the
// groups of a few fixed resources.
func ringDigest(r *ring) string {
	b := make([]byte, 4*len(r.owner))
	for i, o := range r.owner {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(o))
	}
	s := fmt.Sprintf("%d:%016x", len(r.owner), xxhash.Sum64(b))
	for _, res := range []string{"a", "orders:42", "user:1001", "resource:999999"} {
		s += fmt.Sprintf(",%d", loc(r, res))
	}
	return s
}

// TestRingGolden pins routing: the ring's output must never change between
// versions of the library (a routing change is a ring change: two versions
// would lock a moved resource on different groups). The digests were taken
// from buraksezer/consistent v0.10.0 fed one member at a time (consistent.New
// with every member), before any change to how the ring is built.
func TestRingGolden(t *testing.T) {
	want := map[int]string{
		1:    "1:3aefa6fd5cf2deb4,0,0,0,0",
		2:    "65536:078bd188fc13a5ef,1,0,0,0",
		3:    "65536:f3ad15e45eaeb63f,1,2,0,2",
		5:    "65536:37f48061897fdc6b,4,2,0,2",
		30:   "65536:44c9d0ee179e736a,6,25,23,2",
		300:  "65536:3e25e0667c994df8,111,65,23,2",
		1000: "65536:d02837d8273918e3,985,608,512,2",
		1100: "70400:a4e48cfe29c8109f,1077,241,856,555",
	}
	for _, g := range []int{1, 2, 3, 5, 30, 300, 1000, 1100} {
		if g >= 1000 && raceEnabled {
			// Minutes under the race detector on a loaded machine (the
			// ring's construction is quadratic): checked without it.
			t.Logf("%d groups: not checked under -race", g)
			continue
		}
		got := ringDigest(newRing(groupIDs(g)))
		if got != want[g] {
			t.Errorf("%d groups: ring %s, want %s", g, got, want[g])
		}
	}
}

// TestRouteGolden pins Route for a fixed cluster, through New (addresses
// normalized into group identities, then the ring).
func TestRouteGolden(t *testing.T) {
	c, err := New(Config{Cluster: unreachableCluster(7, 3), Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := ""
	for _, res := range []string{"a", "orders:42", "user:1001", "resource:999999"} {
		got += fmt.Sprint(c.Route(res))
	}
	if want := "[127.1.0.4:1 127.1.0.5:1 127.1.0.6:1][127.1.0.7:1 127.1.0.8:1 127.1.0.9:1][127.1.0.10:1 127.1.0.11:1 127.1.0.12:1][127.1.0.10:1 127.1.0.11:1 127.1.0.12:1]"; got != want {
		t.Fatalf("routes %s, want %s", got, want)
	}
}
