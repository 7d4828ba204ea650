package redlocktest

// WithOwner labels a container fleet as started by owner ("<host>/<pid>"),
// so that a test can leave a fleet that looks like an earlier run's.
func WithOwner(owner string) Option { return func(o *options) { o.ownerLabel = owner } }

// OwnerID is this process's LabelOwner value.
var OwnerID = ownerID
