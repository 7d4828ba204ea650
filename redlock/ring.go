package redlock

import (
	"unsafe"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Ring tuning. The partition count is fixed (it must not depend on the
// number of groups, or adding a group would move almost every resource) and
// large enough that 1000 groups still own 64 partitions each; every group
// owns at most ringLoad times the average number of partitions, so the
// busiest group carries at most ≈ ringLoad × the average share of resources.
const (
	ringPartitions  = 1 << 16
	ringMaxGroups   = ringPartitions / 64
	ringReplication = 20
	ringLoad        = 1.15
)

// ring routes resources to quorum groups. It is a pure function of the
// groups' identities (sorted normalized master addresses): the order in which
// groups, or masters within a group, are listed never changes routing.
//
// buraksezer/consistent (consistent hashing with bounded loads) assigns
// partitions to groups once, at construction; routing a resource is then one
// xxhash, one modulo and one slice index, with no lock and no allocation.
type ring struct {
	owner []int32 // partition → index into the groups given to newRing
}

type ringMember string

func (m ringMember) String() string { return string(m) }

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// newRing builds the ring over group identities (which must be distinct).
func newRing(ids []string) *ring {
	if len(ids) == 1 {
		return &ring{owner: []int32{0}}
	}
	parts := ringPartitions
	if len(ids) > ringMaxGroups {
		parts = 64 * len(ids)
	}
	members := make([]consistent.Member, len(ids))
	index := make(map[string]int32, len(ids))
	for i, id := range ids {
		members[i] = ringMember(id)
		index[id] = int32(i)
	}
	c := consistent.New(members, consistent.Config{
		PartitionCount:    parts,
		ReplicationFactor: ringReplication,
		Load:              ringLoad,
		Hasher:            xxhasher{},
	})
	r := &ring{owner: make([]int32, parts)}
	for p := range r.owner {
		r.owner[p] = index[c.GetPartitionOwner(p).String()]
	}
	return r
}

// locate returns the index of the group that owns resource, and the
// resource's hash (which also picks a writer on each master).
func (r *ring) locate(resource string) (int, uint64) {
	h := xxhash.Sum64(unsafe.Slice(unsafe.StringData(resource), len(resource)))
	return r.ownerOf(h), h
}

// ownerOf returns the index of the group that owns a resource of hash h.
func (r *ring) ownerOf(h uint64) int {
	if len(r.owner) == 1 {
		return 0
	}
	return int(r.owner[h%uint64(len(r.owner))])
}
