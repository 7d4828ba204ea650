//go:build race

package redlock

// raceEnabled: the race detector is on (some tests then use smaller sizes).
const raceEnabled = true
