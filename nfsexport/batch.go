package nfsexport

import "sync"

// batcher coalesces concurrent edits of one file (group commit): the
// first caller becomes the writer and runs every edit queued so far in one
// rewrite; edits that arrive meanwhile queue up for the next round, which
// the oldest of them writes. Each caller returns once a rewrite that
// includes its edit has finished, and writes at most one round itself: a
// writer that went on writing rounds for later arrivals was held for
// minutes in a sustained storm (a node's first boot waited 3m52s while
// 8,000 others were exported). Both files pxebootfs keeps (the exports
// file and Ganesha's managed file) hold every export, so a rewrite costs
// O(exports): batching keeps a storm of new nodes from costing O(exports)
// per node.
type batcher[E any] struct {
	mu    sync.Mutex
	queue []*queued[E]
	busy  bool // a round is being written, or handed over
}

type queued[E any] struct {
	e    E
	done chan error
	lead chan struct{} // signalled when this caller is to write the next round
}

// do queues e and waits for its result. run gets a batch in queue order
// and returns one error per edit.
func (b *batcher[E]) do(e E, run func(batch []E) []error) error {
	q := &queued[E]{e: e, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, q)
	if b.busy {
		b.mu.Unlock()
		select {
		case err := <-q.done:
			return err
		case <-q.lead:
			// q is still queued: only a writer takes the queue, and
			// the last one handed over to q instead.
		}
		b.mu.Lock()
	}
	b.busy = true
	batch := b.queue
	b.queue = nil
	b.mu.Unlock()

	edits := make([]E, len(batch))
	for i, p := range batch {
		edits[i] = p.e
	}
	errs := run(edits)
	for i, p := range batch {
		p.done <- errs[i]
	}

	b.mu.Lock()
	if len(b.queue) > 0 {
		b.queue[0].lead <- struct{}{}
	} else {
		b.busy = false
	}
	b.mu.Unlock()
	return <-q.done
}

// queued returns how many edits wait for the next round (tests).
func (b *batcher[E]) queuedLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
