package redlock

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

func groupIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("10.0.%d.%d:6379,10.0.%d.%d:6380,10.0.%d.%d:6381", i/250, i%250, i/250, i%250, i/250, i%250)
	}
	return ids
}

func TestRingBalance(t *testing.T) {
	for _, g := range []int{2, 3, 5, 10, 33, 100, 500, 1000} {
		t.Run(fmt.Sprint(g), func(t *testing.T) {
			r := newRing(groupIDs(g))
			// Partition level: the ring's own guarantee.
			counts := make([]int, g)
			for _, o := range r.owner {
				counts[o]++
			}
			maxP := 0
			for _, c := range counts {
				maxP = max(maxP, c)
			}
			avgP := float64(len(r.owner)) / float64(g)
			// Resource level: enough resources that sampling noise is small.
			keys := min(20000*g, 1_000_000)
			load := make([]int, g)
			buf := []byte("resource:")
			for i := 0; i < keys; i++ {
				load[loc(r, string(strconv.AppendInt(buf[:9], int64(i), 10)))]++
			}
			maxK := 0
			for _, c := range load {
				maxK = max(maxK, c)
			}
			avgK := float64(keys) / float64(g)
			t.Logf("groups=%d partitions=%d max/avg partitions=%.3f max/avg resources=%.3f", g, len(r.owner), float64(maxP)/avgP, float64(maxK)/avgK)
			if float64(maxP) > 1.3*avgP {
				t.Fatalf("max group partitions %d > 1.3 × average %.1f", maxP, avgP)
			}
			if float64(maxK) > 1.3*avgK {
				t.Fatalf("max group load %d > 1.3 × average %.1f", maxK, avgK)
			}
		})
	}
}

func TestRingOrderIndependent(t *testing.T) {
	ids := groupIDs(20)
	a := newRing(ids)
	shuffled := append([]string(nil), ids...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := newRing(shuffled)
	pos := make(map[string]int)
	for i, id := range shuffled {
		pos[id] = i
	}
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("k%d", i)
		if ids[loc(a, k)] != shuffled[loc(b, k)] {
			t.Fatalf("resource %q routed to different groups depending on config order", k)
		}
	}
}

func TestRingMovedOnAdd(t *testing.T) {
	for _, g := range []int{3, 10, 50} {
		ids := groupIDs(g + 1)
		before, after := newRing(ids[:g]), newRing(ids)
		const keys = 100000
		moved := 0
		for i := 0; i < keys; i++ {
			k := fmt.Sprintf("resource:%d", i)
			if ids[loc(before, k)] != ids[loc(after, k)] {
				moved++
			}
		}
		share := float64(moved) / keys
		limit := 1/float64(g+1) + 0.10
		t.Logf("groups %d→%d: %.3f of resources moved (ideal %.3f, limit %.3f)", g, g+1, share, 1/float64(g+1), limit)
		if share > limit {
			t.Fatalf("%d→%d groups moved %.3f of resources, limit %.3f", g, g+1, share, limit)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	for _, g := range []int{3, 30, 300, 1000} {
		r := newRing(groupIDs(g))
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = fmt.Sprintf("resource:%d", i)
		}
		b.Run(fmt.Sprintf("groups=%d", g), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = loc(r, keys[i&1023])
			}
		})
	}
}

// loc is the group a resource is routed to.
func loc(r *ring, resource string) int {
	g, _ := r.locate(resource)
	return g
}
