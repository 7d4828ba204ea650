package redlocktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

const (
	// LabelOwner is the label holding "<hostname>/<pid>" of the process that
	// started a container fleet, so that a later fleet can tell a leftover
	// (its process is gone) from a fleet in use.
	LabelOwner = "quorumlock.redlocktest.owner"

	// ReapAge is the age past which a fleet whose owner cannot be checked
	// (started on another host, or without LabelOwner) counts as left over.
	ReapAge = time.Hour
)

// ownerID is this process's LabelOwner value.
var ownerID = func() string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid())
}()

// leftOver tells whether a fleet object (container or network) created at
// created with the given LabelOwner value was left by an earlier run: its
// owner process, on this host, is gone; or, when that cannot be checked, it
// is older than ReapAge.
func leftOver(owner string, created, now time.Time) bool {
	host, pid, ok := strings.Cut(owner, "/")
	if myHost, _ := os.Hostname(); ok && host == myHost {
		if n, err := strconv.Atoi(pid); err == nil {
			return !processAlive(n)
		}
	}
	return now.Sub(created) > ReapAge
}

// processAlive reports whether process pid exists (a process of another
// user counts as alive).
func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	p, err := os.FindProcess(pid) // fails for a missing process on Windows
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0)) // Unix: 0 checks existence; Windows: unsupported (it exists)
	return !errors.Is(err, os.ErrProcessDone)
}

// reapLeftovers removes the containers and networks of container fleets
// that earlier runs left behind: a test killed by -timeout or Ctrl-C runs
// no cleanup, and Ryuk (testcontainers' reaper) is disabled. It returns
// what it removed; errors do not stop it (a fleet in use is never touched).
func reapLeftovers(ctx context.Context, api client.APIClient) ([]string, error) {
	filters := client.Filters{}.Add("label", LabelFleet)
	now := time.Now()
	var removed []string
	var errs []error
	cs, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("redlocktest: list leftover containers: %w", err)
	}
	for _, c := range cs.Items {
		if !leftOver(c.Labels[LabelOwner], time.Unix(c.Created, 0), now) {
			continue
		}
		if _, rerr := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil {
			errs = append(errs, fmt.Errorf("redlocktest: remove leftover container %.12s: %w", c.ID, rerr))
			continue
		}
		removed = append(removed, "container "+strings.TrimPrefix(firstOr(c.Names, c.ID), "/"))
	}
	ns, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: filters})
	if err != nil {
		return removed, errors.Join(append(errs, fmt.Errorf("redlocktest: list leftover networks: %w", err))...)
	}
	for _, n := range ns.Items {
		if !leftOver(n.Labels[LabelOwner], n.Created, now) {
			continue
		}
		if _, rerr := api.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); rerr != nil {
			errs = append(errs, fmt.Errorf("redlocktest: remove leftover network %s: %w", n.Name, rerr))
			continue
		}
		removed = append(removed, "network "+n.Name)
	}
	return removed, errors.Join(errs...)
}

func firstOr(names []string, id string) string {
	if len(names) > 0 {
		return names[0]
	}
	return id
}
