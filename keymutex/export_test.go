package keymutex

// Waiters returns how many waiters are queued on key (for tests).
func (m *Mutex[K]) Waiters(key K) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for w := m.keys[key].head; w != nil; w = w.next {
		n++
	}
	return n
}

// HeldKeys returns how many keys are held, and how many owners have complete
// locks, on m (for tests).
func (m *Mutex[K]) HeldKeys() (keys, owners int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys), len(m.owners)
}

// TrackedMutexes returns on how many Mutexes o holds locks (for tests).
func (o *Owner) TrackedMutexes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.mutexes)
}
