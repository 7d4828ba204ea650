//go:build !unix

package main

import "math"

// openFileLimit: no ulimit here; the number of handles is not the limit.
func openFileLimit() uint64 { return math.MaxUint64 }
