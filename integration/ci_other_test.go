//go:build !linux

package integration

// noDockerChild: TestCIFailsWithoutDocker needs Linux mount namespaces, so
// there is never a no-Docker child here.
func noDockerChild() (code int, ok bool) { return 0, false }
