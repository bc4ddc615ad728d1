package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/registry"
)

// Install states in cluster mode: a node's install state and token live in
// etcd (nodes/NODE/install), so that `pxebootfs install` on any server puts
// the node in install mode on all of them, and an installer's callback to
// any server is checked against the one token. Every other part of a
// node's record stays in the server's own registry.

// LocalStore is the server's own registry, as the install store needs it
// (package install's Store; a *registry.Registry implements it).
type LocalStore interface {
	Get(id node.ID) (registry.Record, bool)
	All() []registry.Record
	Change(id node.ID, create bool, change func(*registry.Record) (durable bool, err error)) (registry.Record, error)
}

// Installs is an install store whose Install parts are the cluster's.
type Installs struct {
	c     *Cluster
	local LocalStore
}

// Installs returns the install store over local; changed, if not nil, is
// called for every node whose install state another server changed.
func (c *Cluster) Installs(local LocalStore, changed func(node.ID)) *Installs {
	s := &Installs{c: c, local: local}
	c.mu.Lock()
	c.onInstall = changed
	c.mu.Unlock()
	return s
}

// installRecord is an install state as etcd holds it, with the revision
// it was read at for the next compare-and-swap.
type installRecord struct {
	in  registry.Install
	rev int64
}

// Get is local's record of id with the cluster's install state; a node
// this server never held is a record with only that.
func (s *Installs) Get(id node.ID) (registry.Record, bool) {
	rec, ok := s.local.Get(id)
	s.c.mu.Lock()
	ir, shared := s.c.installs[id]
	s.c.mu.Unlock()
	if !shared {
		return rec, ok
	}
	rec.ID, rec.Install = id, ir.in
	return rec, true
}

// All is local's records with the cluster's install states, and the nodes
// only the cluster knows an install state of.
func (s *Installs) All() []registry.Record {
	recs := s.local.All()
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	seen := map[node.ID]bool{}
	for i := range recs {
		if ir, ok := s.c.installs[recs[i].ID]; ok {
			recs[i].Install = ir.in
		}
		seen[recs[i].ID] = true
	}
	var extra []registry.Record
	for id, ir := range s.c.installs {
		if !seen[id] {
			extra = append(extra, registry.Record{ID: id, Install: ir.in})
		}
	}
	slices.SortFunc(extra, func(a, b registry.Record) int { return a.ID.Compare(b.ID) })
	return append(recs, extra...)
}

// casRetries bounds how often a change is tried again when another server
// changed the same node's install state in between.
const casRetries = 20

// Change applies change to id's record and stores its install state in
// etcd, compare-and-swapped against the revision it was read at. The
// rest of the record is not stored: only install states are changed
// through this store. Without create, a node neither this server's
// registry nor the cluster knows is an error; with it, the node needs no
// local record.
func (s *Installs) Change(id node.ID, create bool, change func(*registry.Record) (bool, error)) (registry.Record, error) {
	key := s.c.nodeKey(id, "install")
	for range casRetries {
		rec, known := s.Get(id)
		if !known && !create {
			return rec, fmt.Errorf("node %s: %w", id, registry.ErrUnknownNode)
		}
		rec.ID = id
		s.c.mu.Lock()
		rev := s.c.installs[id].rev
		s.c.mu.Unlock()
		if _, err := change(&rec); err != nil {
			return rec, err
		}
		b, err := json.Marshal(rec.Install)
		if err != nil {
			return rec, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.c.timeout)
		resp, err := s.c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(b))).
			Else(clientv3.OpGet(key)).
			Commit()
		cancel()
		if err != nil {
			s.c.setUp(false)
			return rec, fmt.Errorf("node %s: install state: %w: %w: %w", id, registry.ErrUnavailable, ErrUnavailable, err)
		}
		s.c.setUp(true)
		s.c.mu.Lock()
		if resp.Succeeded {
			s.c.installs[id] = installRecord{in: rec.Install, rev: resp.Header.Revision}
			s.c.mu.Unlock()
			return rec, nil
		}
		// Another server changed it: take its value and try again.
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			s.c.applyInstallLocked(id, kvs[0].Value, kvs[0].ModRevision)
		}
		s.c.mu.Unlock()
	}
	return registry.Record{}, fmt.Errorf("node %s: install state: %w", id, errContended)
}

var errContended = errors.New("changed by other servers too often at once; try again")

// applyInstallLocked takes an install state read from etcd at rev.
func (c *Cluster) applyInstallLocked(id node.ID, value []byte, rev int64) {
	var in registry.Install
	if err := json.Unmarshal(value, &in); err != nil {
		c.log.Warn("cluster: ignoring an install state that does not parse", "node", id, "err", err)
		return
	}
	old, had := c.installs[id]
	c.installs[id] = installRecord{in: in, rev: rev}
	if c.onInstall != nil && (!had || old.in.State != in.State || old.in.Token != in.Token) {
		go c.onInstall(id) // outside the lock: it re-renders through Get
	}
}
