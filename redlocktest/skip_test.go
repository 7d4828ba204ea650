package redlocktest

import (
	"errors"
	"fmt"
	"testing"
)

func TestSkipOn(t *testing.T) {
	noDaemon := fmt.Errorf("%w: dial unix /var/run/docker.sock: no such file", ErrDockerUnavailable)
	for _, tc := range []struct {
		ci   string
		err  error
		skip bool
	}{
		{"", noDaemon, true},
		{"false", noDaemon, true},
		{"true", noDaemon, false},
		{"1", noDaemon, false},
		{"", errors.New("redlocktest: start master g0m0: no such image"), false},
		{"true", errors.New("redlocktest: start master g0m0: no such image"), false},
	} {
		t.Run(fmt.Sprintf("CI=%q/%v", tc.ci, tc.err), func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			if got := skipOn(tc.err); got != tc.skip {
				t.Fatalf("skipOn = %v, want %v", got, tc.skip)
			}
		})
	}
}
