package main

import (
	"io"
	"sync"
)

// asyncWriter writes the daemon's log lines from a goroutine of its own, in
// order: a served file's log line is then written after the FUSE reply, not
// before it, so the write to the journal's pipe is off every open's path.
// When the queue is full, Write waits (nothing is dropped).
type asyncWriter struct {
	w    io.Writer
	ch   chan []byte
	done chan struct{}

	mu     sync.RWMutex
	closed bool // after Close, writes go straight to w
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, ch: make(chan []byte, 4096), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for b := range a.ch {
			a.w.Write(b)
		}
	}()
	return a
}

// Write queues a copy of p (slog reuses its buffer).
func (a *asyncWriter) Write(p []byte) (int, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		// A goroutine that outlived the daemon's main path.
		return a.w.Write(p)
	}
	a.ch <- append([]byte(nil), p...)
	return len(p), nil
}

// Close writes what is queued and stops the goroutine; later writes are
// written directly.
func (a *asyncWriter) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	a.mu.Unlock()
	<-a.done
	return nil
}
