package sshtest

import (
	"net"
	"sync"
)

// maxQueued bounds the bytes a bufferedConn holds before Write blocks.
const maxQueued = 1 << 20

// bufferedConn gives a connection without kernel buffering (net.Pipe and
// the like) a write queue flushed by a goroutine. x/crypto/ssh writes
// during version and key exchange while its reader waits, so two ends that
// both write first would deadlock on an unbuffered pipe. Close stops the
// flusher.
type bufferedConn struct {
	net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []byte
	err    error
	closed bool
	done   chan struct{}
}

// wrapUnbuffered returns c itself for TCP and Unix sockets, which buffer in
// the kernel, and a bufferedConn otherwise.
func wrapUnbuffered(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return c
	}
	b := &bufferedConn{Conn: c, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.flush()
	return b
}

// Write queues p, blocking only while more than maxQueued bytes wait.
func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) > maxQueued && b.err == nil && !b.closed {
		b.cond.Wait()
	}
	switch {
	case b.err != nil:
		return 0, b.err
	case b.closed:
		return 0, net.ErrClosed
	}
	b.queue = append(b.queue, p...)
	b.cond.Broadcast()
	return len(p), nil
}

// flush writes queued bytes until Close or a write error.
func (b *bufferedConn) flush() {
	defer close(b.done)
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closed {
			b.cond.Wait()
		}
		if b.closed {
			b.mu.Unlock()
			return
		}
		out := b.queue
		b.queue = nil
		b.mu.Unlock()
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.err = err
		b.cond.Broadcast()
		b.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Close closes the connection and waits for the flusher to stop.
func (b *bufferedConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	err := b.Conn.Close()
	<-b.done
	return err
}
