package redlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Release notifications: every release script PUBLISHes the released token
// on releasedChannelPrefix + key on every master where it deleted the key
// (for RWMutex and Semaphore, key is their first key, and a reader's,
// writer's or permit's release is announced alike). A client's waiters (the
// blocking acquisitions of wait.go) share one subscription connection per
// master — dedicated, outside PoolSize, opened on the first wait and closed
// by Close. Each key with waiters is one channel, subscribed while the key
// has waiters in this client.
//
// Messages only make waiting fast; they are never needed for safety or
// liveness: every wait is bounded by the time the masters may still refuse
// (the key's PTTL, or the expiry of the blocking shares and permits) and by
// the retry delay, so a lost message — a subscription connection killed, a
// master paused or down — costs at most that bound.

// subscriber is one master's subscription connection.
type subscriber struct {
	h *hub
	n *node

	mu      sync.Mutex
	conn    net.Conn              // nil while not connected
	w       *bufio.Writer         // on conn
	chans   map[string]*chanState // by channel
	failing bool                  // the last dial failed or the connection was lost: don't wait for acks
	lost    bool                  // a connection was lost: subscriptions renewed on the next one wake their keys' heads
	denied  bool                  // the server refused SUBSCRIBE (ACL): never wait for acks
	closed  bool
}

// chanState is one channel on one subscription connection.
type chanState struct {
	wanted    bool
	sent      int           // SUBSCRIBEs written on the current connection
	acked     int           // their confirmations read
	ready     chan struct{} // closed when every SUBSCRIBE sent is confirmed, or the connection failed
	readyShut bool
	confirmed bool // every SUBSCRIBE sent on the current connection is confirmed (ready closed by an ack, not a failure)
	// wakeOnAck: wake the key's head at the next confirmation — the
	// channel is subscribed again after a reconnect, or a waiter stopped
	// waiting for its confirmation (hub.subscribe): a release may have
	// been announced before it, unheard.
	wakeOnAck bool
}

// subscriber returns nd's subscriber, starting it on first use. h.mu held.
func (h *hub) subscriberLocked(nd *node) *subscriber {
	if s := h.subs[nd]; s != nil {
		return s
	}
	if h.subs == nil {
		h.subs = make(map[*node]*subscriber)
	}
	s := &subscriber{h: h, n: nd, chans: make(map[string]*chanState)}
	h.subs[nd] = s
	h.c.goBackground(s.run)
	return s
}

// want subscribes channel (if not yet) and returns a channel closed once the
// subscription is confirmed, or nil when there is nothing to wait for (not
// connected, or refused).
func (s *subscriber) want(channel string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[channel]
	if st == nil {
		st = &chanState{}
		s.chans[channel] = st
	}
	if !st.wanted {
		st.wanted = true
		st.ready = make(chan struct{})
		st.readyShut, st.confirmed = false, false
		if s.conn != nil && !s.denied {
			st.sent++
			s.writeLocked("SUBSCRIBE", channel)
		}
	}
	if s.failing || s.denied || s.closed {
		return nil
	}
	return st.ready
}

// unwant unsubscribes channel.
func (s *subscriber) unwant(channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[channel]
	if st == nil || !st.wanted {
		return
	}
	st.wanted = false
	if s.conn != nil && !s.denied {
		s.writeLocked("UNSUBSCRIBE", channel)
	}
	if st.sent == st.acked {
		delete(s.chans, channel)
	}
}

// writeLocked writes one command; a failed write closes the connection (the
// reader then reconnects). s.mu held.
func (s *subscriber) writeLocked(args ...string) {
	if s.conn == nil {
		return
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.h.c.s.NodeTimeout))
	writeCommand(s.w, args...)
	if err := s.w.Flush(); err != nil {
		_ = s.conn.Close()
	}
}

// close ends the subscriber (Client.Close).
func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// run connects, subscribes the wanted channels, and reads messages until
// Close; a lost connection is dialed again (at once, then every
// ReconnectInterval).
func (s *subscriber) run() {
	c := s.h.c
	var delay time.Duration
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-c.closing:
				t.Stop()
				return
			case <-t.C:
			}
		}
		conn, rd, err := s.dial()
		if err != nil {
			s.mu.Lock()
			s.failing = true
			s.shutReadyLocked()
			s.mu.Unlock()
			delay = c.s.ReconnectInterval
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.conn, s.w = conn, bufio.NewWriterSize(conn, 1024)
		s.failing = false
		var chans []string
		for ch, st := range s.chans {
			if !st.wanted {
				delete(s.chans, ch)
				continue
			}
			st.sent, st.acked, st.confirmed = 1, 0, false
			st.wakeOnAck = st.wakeOnAck || s.lost
			if st.readyShut {
				st.ready, st.readyShut = make(chan struct{}), false
			}
			chans = append(chans, ch)
		}
		if len(chans) > 0 && !s.denied {
			s.writeLocked(append([]string{"SUBSCRIBE"}, chans...)...)
		}
		s.mu.Unlock()

		started := time.Now()
		s.read(rd)
		s.mu.Lock()
		_ = conn.Close()
		s.conn, s.w = nil, nil
		s.failing, s.lost = true, true
		s.shutReadyLocked()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		delay = 0
		if time.Since(started) < time.Second {
			delay = c.s.ReconnectInterval // killed right away again: don't spin
		}
	}
}

// shutReadyLocked releases everyone waiting for a confirmation that will not
// come on this connection. s.mu held.
func (s *subscriber) shutReadyLocked() {
	for _, st := range s.chans {
		st.confirmed = false
		if st.wanted && !st.readyShut {
			close(st.ready)
			st.readyShut = true
		}
	}
}

// dial opens the connection (TLS as configured), authenticates and checks it
// with PING, within DialTimeout + NodeTimeout.
func (s *subscriber) dial() (net.Conn, *bufio.Reader, error) {
	c := s.h.c
	ctx, cancel := context.WithTimeout(context.Background(), c.s.DialTimeout+c.s.NodeTimeout)
	defer cancel()
	go func() { // Close interrupts a dial
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := s.n.pool.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	w := bufio.NewWriterSize(conn, 256)
	a := s.n.addr
	switch {
	case a.username != "":
		writeCommand(w, "AUTH", a.username, a.password)
	case a.password != "":
		writeCommand(w, "AUTH", a.password)
	}
	writeCommand(w, "PING")
	rd := bufio.NewReaderSize(conn, 4096)
	if err := w.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	n := 1
	if a.username != "" || a.password != "" {
		n = 2
	}
	for range n {
		v, err := readValue(rd)
		if err == nil {
			if e, ok := v.(respError); ok {
				err = e
			}
		}
		if err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("subscription connection: %s", redactErr(err, a))
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, rd, nil
}

// read dispatches what the server pushes until the connection fails.
func (s *subscriber) read(rd *bufio.Reader) {
	for {
		v, err := readValue(rd)
		if err != nil {
			return
		}
		switch m := v.(type) {
		case respError:
			// A refused SUBSCRIBE (ACL without channel access): waiters
			// fall back to their bounds; don't wait for acks any more.
			s.mu.Lock()
			if !s.denied {
				s.denied = true
				s.h.c.s.Logger.Warn("redlock: release notifications refused; waiters fall back to timers",
					"master", s.n.addr.redacted, "err", string(m))
			}
			s.shutReadyLocked()
			s.mu.Unlock()
		case []any:
			if len(m) < 3 {
				continue
			}
			kind, _ := m[0].(string)
			ch, _ := m[1].(string)
			switch kind {
			case "message":
				payload, _ := m[2].(string)
				s.h.notify(ch[min(len(ch), len(releasedChannelPrefix)):], payload, s.n)
			case "subscribe":
				if s.ack(ch) {
					s.h.notify(ch[min(len(ch), len(releasedChannelPrefix)):], "", s.n)
				}
			case "unsubscribe":
				s.mu.Lock()
				if st := s.chans[ch]; st != nil && !st.wanted && st.sent == st.acked {
					delete(s.chans, ch)
				}
				s.mu.Unlock()
			}
		}
	}
}

// ack records a SUBSCRIBE confirmation; it reports a channel whose key's
// head must be woken (wakeOnAck: a release may have been missed).
func (s *subscriber) ack(ch string) (resubscribed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[ch]
	if st == nil {
		return false
	}
	st.acked++
	if st.acked < st.sent {
		return false
	}
	if !st.wanted {
		delete(s.chans, ch)
		return false
	}
	if !st.readyShut {
		close(st.ready)
		st.readyShut = true
	}
	st.confirmed = true
	re := st.wakeOnAck
	st.wakeOnAck = false
	return re
}

// confirmedOrWake reports whether channel's subscription is confirmed on
// the current connection; if not, its confirmation, when it comes, wakes
// the key's head (a waiter that stopped waiting for it may have missed an
// announcement meanwhile).
func (s *subscriber) confirmedOrWake(channel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[channel]
	if st == nil || !st.wanted {
		return false
	}
	if !st.confirmed {
		st.wakeOnAck = true
	}
	return st.confirmed
}

// ---------------------------------------------------------------- RESP2

// respError is an error reply.
type respError string

func (e respError) Error() string { return string(e) }

func writeCommand(w *bufio.Writer, args ...string) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}

// maxRESPBulk bounds one bulk string read from a subscription connection
// (channel names are KeyPrefix + resource, bounded by MaxResourceLen).
const maxRESPBulk = 1 << 20

var errRESP = errors.New("malformed reply on the subscription connection")

// readValue reads one RESP2 value: string (simple or bulk), int64,
// respError, nil, or []any.
func readValue(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errRESP
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return respError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n > maxRESPBulk {
			return nil, errRESP
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n > 64 {
			return nil, errRESP
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readValue(rd); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, errRESP
}
