package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Admin actions on another server's node. `pxebootfs reset` and `release`
// act on a node's root, which only its owner holds: run on any server,
// they are handed to the owner as a request (requests/OWNER/ID), which the
// owner's daemon, watching its requests, carries out and answers
// (answers/ID). A request made while the owner is down waits for it.

// Request is an admin action for the owner of a node.
type Request struct {
	ID     string `json:"id"`
	Node   string `json:"node"`
	Action string `json:"action"` // "reset" or "release"
	Force  bool   `json:"force,omitempty"`
	Purge  bool   `json:"purge,omitempty"`
	From   string `json:"from"` // the server that asked
}

// Answer is the owner's outcome of a Request: Err empty on success; Code
// classifies a failure for the asker's exit code.
type Answer struct {
	Err  string `json:"err,omitempty"`
	Code string `json:"code,omitempty"`
}

// requestQueue is how many requests to this server wait for its reader.
const requestQueue = 256

// Requests gives the requests other servers made of this one; closed by
// Close.
func (c *Cluster) Requests() <-chan Request { return c.requests }

// Ask sends r to server owner and waits for its answer, or ctx's end.
func (c *Cluster) Ask(ctx context.Context, owner string, r Request) (Answer, error) {
	r, err := c.send(ctx, owner, r)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: ask its owner %s: %w: %w", r.Action, r.Node, owner, ErrUnavailable, err)
	}
	a, err := waitMemory(ctx, c, func() (Answer, bool) {
		a, ok := c.answers[r.ID]
		delete(c.answers, r.ID)
		return a, ok
	})
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: no answer from its owner %s (the request stays for it): %w", r.Action, r.Node, owner, err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.cli.Delete(dctx, c.prefix+"answers/"+r.ID) // read: nobody else wants it
	return a, nil
}

// Nudge asks owner, without waiting, to make id's root now: another
// server is about to render the node and its owner has none published
// (it released it, or lost it in a reboot).
func (c *Cluster) Nudge(ctx context.Context, owner string, id string) error {
	_, err := c.send(ctx, owner, Request{Node: id, Action: ActionPrepare})
	return err
}

// send gives r a new ID, this server as its sender, and puts it in
// owner's requests; it returns r as sent.
func (c *Cluster) send(ctx context.Context, owner string, r Request) (Request, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return r, err
	}
	r.ID, r.From = hex.EncodeToString(b[:]), c.self.Server
	data, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err = c.cli.Put(ctx, c.prefix+"requests/"+owner+"/"+r.ID, string(data))
	return r, err
}

// ActionPrepare is Nudge's request: it has no answer.
const ActionPrepare = "prepare"

// Reply answers r, and takes it off this server's requests.
func (c *Cluster) Reply(ctx context.Context, r Request, a Answer) error {
	ops := []clientv3.Op{clientv3.OpDelete(c.prefix + "requests/" + c.self.Server + "/" + r.ID)}
	if r.Action != ActionPrepare {
		data, err := json.Marshal(a)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(c.prefix+"answers/"+r.ID, string(data)))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.cli.Txn(ctx).Then(ops...).Commit()
	return err
}

// applyRequestLocked applies a key under requests/ or answers/.
func (c *Cluster) applyRequestLocked(parts []string, value []byte, deleted bool) {
	switch {
	case parts[0] == "requests" && len(parts) == 3 && parts[1] == c.self.Server && deleted:
		delete(c.queued, parts[2]) // answered
	case parts[0] == "requests" && len(parts) == 3 && parts[1] == c.self.Server:
		if c.queued[parts[2]] {
			return
		}
		var r Request
		if err := json.Unmarshal(value, &r); err != nil {
			c.log.Warn("cluster: ignoring a request that does not parse", "id", parts[2], "err", err)
			return
		}
		select {
		case c.requests <- r:
			c.queued[parts[2]] = true
		default:
			c.log.Warn("cluster: too many requests at once; this one waits for the next start", "id", r.ID, "node", r.Node, "action", r.Action)
		}
	case parts[0] == "answers" && len(parts) == 2:
		if deleted {
			delete(c.answers, parts[1])
			return
		}
		var a Answer
		if err := json.Unmarshal(value, &a); err == nil {
			c.answers[parts[1]] = a
		}
	}
}
