// Package cluster keeps the node state several pxebootfs servers must agree
// on in etcd: which server owns each node (holds its root), and where each
// server is reached. What is a server's own stays local: fsids, mounts,
// exports, the files of root generations.
//
// Layout under the prefix (default /pxebootfs/):
//
//	servers/NAME        the server's address (what nodes mount from)
//	nodes/NODE/owner    the name of the server holding the node's root
//	nodes/NODE/root     the owner's view of the root: JSON {dir, fsid, root, gen}
//	nodes/NODE/install  the node's install state and token (install.go)
//	roots/NAME/desired  the generation every server makes current (roots.go)
//	roots/NAME/servers/SERVER  what that server serves of NAME
//	images/NAME/…       the same for boot images
//	requests/SERVER/ID  an admin action for SERVER's node; answers/ID its outcome
//
// A node is claimed by one transaction that writes owner only if the key
// was never created (create revision 0), so two servers seeing a new node
// at the same instant never both own it. Every server keeps the owners
// and servers in memory from one watch on the prefix, so a config is
// rendered without a round trip to etcd, and known nodes are served while
// etcd cannot be reached; only claims need it.
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Options configure a Cluster.
type Options struct {
	Endpoints []string
	// CertFile, KeyFile and CAFile are TLS to etcd; empty: plain.
	CertFile, KeyFile, CAFile string
	Prefix                    string // default DefaultPrefix
	Server                    string // this server's name
	Address                   string // where nodes reach this server
	Logger                    *slog.Logger
	// Timeout bounds each request to etcd; default DefaultTimeout.
	Timeout time.Duration
	// OnUp, if set, is told when etcd becomes reachable or unreachable.
	OnUp func(up bool)
	// StartDown: if etcd does not answer, Open still returns, the cluster
	// down (Up false), and joins when etcd answers. Otherwise Open fails.
	StartDown bool
}

// DefaultPrefix is cluster_prefix's default.
const DefaultPrefix = "/pxebootfs/"

// DefaultTimeout bounds one request to etcd: a boot waits at most this
// long for a claim, which pxelinux's TFTP retries cover.
const DefaultTimeout = 3 * time.Second

// ErrUnavailable is wrapped by a claim etcd did not answer.
var ErrUnavailable = errors.New("etcd unreachable: new nodes are not claimed until it answers")

// Owner is the server holding a node's root.
type Owner struct {
	Server  string // name
	Address string // "" if the server has not registered its address
}

// NodeRoot is the owner's view of a node's root, for the other servers'
// renders.
type NodeRoot struct {
	Dir  string `json:"dir"` // the exported path on the owner
	FSID uint32 `json:"fsid"`
	Root string `json:"root,omitempty"`
	Gen  string `json:"gen,omitempty"`
}

// Cluster is one server's connection to the shared state.
type Cluster struct {
	cli     *clientv3.Client
	prefix  string
	self    Owner
	log     *slog.Logger
	timeout time.Duration
	onUp    func(bool)

	mu       sync.Mutex
	owners   map[node.ID]string // node -> server name
	roots    map[node.ID]NodeRoot
	servers  map[string]string // name -> address
	installs map[node.ID]installRecord
	// desired, rootStates, kindChanged: root generations and image
	// versions, by kind (roots.go).
	desired     map[string]map[string]Desired
	states      map[string]map[string]State // by KIND/NAME
	kindChanged map[string]chan struct{}
	// requests to this server and answers to its own (requests.go).
	requests chan Request
	queued   map[string]bool
	answers  map[string]Answer
	// onInstall is told of install states changed through the watch.
	onInstall func(node.ID)
	changed   chan struct{} // closed (and replaced) when memory changes
	owned     chan node.ID  // nodes handed to this server by others

	up     atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

// Open connects to etcd, registers this server's address and loads the
// shared state. If etcd does not answer within the timeout it fails, or
// with o.StartDown returns a cluster that is down and joins later: until
// then it knows no owners and claims nothing, so it cannot take a node
// another server owns.
func Open(ctx context.Context, o Options) (*Cluster, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := clientv3.Config{Endpoints: o.Endpoints, DialTimeout: o.Timeout, Logger: nil}
	if o.CertFile != "" || o.CAFile != "" {
		tlsInfo := transport.TLSInfo{CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.CAFile}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster TLS: %w", err)
		}
		tc.MinVersion = tls.VersionTLS12
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", o.Endpoints, err)
	}
	c := &Cluster{cli: cli, prefix: o.Prefix, self: Owner{Server: o.Server, Address: o.Address}, log: o.Logger, timeout: o.Timeout, onUp: o.OnUp,
		owners: map[node.ID]string{}, roots: map[node.ID]NodeRoot{}, servers: map[string]string{}, installs: map[node.ID]installRecord{},
		desired:     map[string]map[string]Desired{KindRoots: {}, KindImages: {}},
		states:      map[string]map[string]State{},
		kindChanged: map[string]chan struct{}{KindRoots: make(chan struct{}, 1), KindImages: make(chan struct{}, 1)},
		requests:    make(chan Request, requestQueue), queued: map[string]bool{}, answers: map[string]Answer{}, done: make(chan struct{}), changed: make(chan struct{}),
		owned: make(chan node.ID, ownedQueue)}
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rev, err := c.join(rctx)
	switch {
	case err == nil:
		c.setUp(true)
	case o.StartDown:
		// A daemon restarted while etcd is down serves what its own
		// registry holds, and joins when etcd answers.
		rev = 0
		c.up.Store(true) // so that setUp logs the change
		c.setUp(false)
	default:
		cli.Close()
		return nil, fmt.Errorf("etcd %v: %w", o.Endpoints, err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	c.cancel = wcancel
	go c.follow(wctx, rev+1)
	return c, nil
}

// Close stops following and disconnects.
func (c *Cluster) Close() error {
	c.cancel()
	<-c.done
	close(c.owned)
	close(c.requests)
	return c.cli.Close()
}

// Self is this server.
func (c *Cluster) Self() Owner { return c.self }

// Up says whether etcd answered the last request or probe.
func (c *Cluster) Up() bool { return c.up.Load() }

// join registers this server's address and loads the shared state,
// returning the revision it read at.
func (c *Cluster) join(ctx context.Context) (int64, error) {
	if _, err := c.cli.Put(ctx, c.prefix+"servers/"+c.self.Server, c.self.Address); err != nil {
		return 0, fmt.Errorf("register server %s: %w", c.self.Server, err)
	}
	rev, err := c.load(ctx)
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", c.prefix, err)
	}
	return rev, nil
}

// load reads everything under the prefix into memory and returns the
// revision it read at. What memory held is updated in place, as the watch
// would have, so that only real changes count (a node handed over, an
// install state changed); keys gone meanwhile are dropped.
func (c *Cluster) load(ctx context.Context) (int64, error) {
	resp, err := c.cli.Get(ctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		seen[string(kv.Key)] = true
		c.applyLocked(string(kv.Key), kv.Value, kv.ModRevision, false)
	}
	for name := range c.servers {
		if !seen[c.prefix+"servers/"+name] {
			delete(c.servers, name)
		}
	}
	for id := range c.owners {
		if !seen[c.nodeKey(id, "owner")] {
			delete(c.owners, id)
		}
	}
	for id := range c.roots {
		if !seen[c.nodeKey(id, "root")] {
			delete(c.roots, id)
		}
	}
	c.broadcastLocked()
	return resp.Header.Revision, nil
}

// nodeKey is the key of id's field (owner, root, install).
func (c *Cluster) nodeKey(id node.ID, field string) string {
	return c.prefix + "nodes/" + id.String() + "/" + field
}

// applyLocked applies one key's new value (or its deletion) to memory.
// Keys not in the layout are ignored: a newer server may write more.
func (c *Cluster) applyLocked(key string, value []byte, rev int64, deleted bool) {
	rest, ok := strings.CutPrefix(key, c.prefix)
	if !ok {
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[0] == "servers":
		if deleted {
			delete(c.servers, parts[1])
		} else {
			c.servers[parts[1]] = string(value)
		}
	case parts[0] == "requests" || parts[0] == "answers":
		c.applyRequestLocked(parts, value, deleted)
	case len(parts) >= 3 && (parts[0] == KindRoots || parts[0] == KindImages):
		c.applyDesiredLocked(parts, value, deleted)
	case len(parts) == 3 && parts[0] == "nodes":
		id, err := node.ParseHex(parts[1])
		if err != nil {
			c.log.Warn("cluster: ignoring a key that names no node", "key", key)
			return
		}
		switch parts[2] {
		case "owner":
			if deleted {
				delete(c.owners, id)
				return
			}
			prev, had := c.owners[id]
			c.owners[id] = string(value)
			if string(value) == c.self.Server && (!had || prev != c.self.Server) {
				c.handOver(id)
			}
		case "install":
			if deleted {
				delete(c.installs, id)
			} else {
				c.applyInstallLocked(id, value, rev)
			}
		case "root":
			var r NodeRoot
			if deleted {
				delete(c.roots, id)
			} else if err := json.Unmarshal(value, &r); err == nil {
				c.roots[id] = r
			} else {
				c.log.Warn("cluster: ignoring a root record that does not parse", "key", key, "err", err)
			}
		}
	}
}

// follow keeps memory in step with etcd from revision rev on. A watch that
// is cut (etcd down, compacted) is resumed from a fresh load; meanwhile
// memory keeps what it had, which is what known nodes are served from.
func (c *Cluster) follow(ctx context.Context, rev int64) {
	defer close(c.done)
	for ctx.Err() == nil {
		if rev == 0 {
			rev = c.rejoin(ctx)
			continue
		}
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				c.log.Debug("cluster: watch ended", "err", err)
				break
			}
			c.setUp(true)
			c.mu.Lock()
			for _, ev := range resp.Events {
				c.applyLocked(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, ev.Type == clientv3.EventTypeDelete)
			}
			c.broadcastLocked()
			c.mu.Unlock()
			rev = resp.Header.Revision + 1
		}
		if ctx.Err() != nil {
			return
		}
		// Cut off: wait for etcd, then load afresh (events may have been
		// compacted away meanwhile).
		rev = c.rejoin(ctx)
	}
}

// rejoin waits for etcd and joins again, returning the revision to watch
// from (0 if ctx ended first).
func (c *Cluster) rejoin(ctx context.Context) int64 {
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, c.timeout)
		r, err := c.join(lctx)
		cancel()
		if err == nil {
			c.setUp(true)
			return r + 1
		}
		c.setUp(false)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return 0
}

// setUp records whether etcd answers, logging each change once.
func (c *Cluster) setUp(up bool) {
	if c.up.Swap(up) == up {
		return
	}
	if up {
		c.log.Info("cluster: etcd answers again; claiming new nodes")
	} else {
		c.log.Error("cluster: etcd unreachable: serving known nodes only, new nodes refused, install callbacks answered 503")
	}
	if c.onUp != nil {
		c.onUp(up)
	}
}

// Owner is the owner of id as last seen, if it has one.
func (c *Cluster) Owner(id node.ID) (Owner, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.owners[id]
	if !ok {
		return Owner{}, false
	}
	return Owner{Server: name, Address: c.servers[name]}, true
}

// Owners is every node's owner as last seen.
func (c *Cluster) Owners() map[node.ID]Owner {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[node.ID]Owner, len(c.owners))
	for id, name := range c.owners {
		m[id] = Owner{Server: name, Address: c.servers[name]}
	}
	return m
}

// Root is the owner's view of id's root, if it published one.
func (c *Cluster) Root(id node.ID) (NodeRoot, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.roots[id]
	return r, ok
}

// ownedQueue is how many handed-over nodes wait for Owned's reader; past
// it a node is made at its first boot through this server instead.
const ownedQueue = 4096

// handOver queues id, which this server now owns, for Owned.
func (c *Cluster) handOver(id node.ID) {
	select {
	case c.owned <- id:
	default:
		c.log.Warn("cluster: too many nodes handed over at once; this one gets its root at its first boot through this server", "node", id)
	}
}

// Owned gives the nodes other servers (or `pxebootfs move`) made this
// server's owner of, including those found at Open: their roots are to be
// made here now, so that the other servers can render them. It is closed by
// Close.
func (c *Cluster) Owned() <-chan node.ID { return c.owned }

// broadcastLocked wakes every WaitRoot.
func (c *Cluster) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitRoot waits until id's owner has published its root (it is making it
// now, for a node just claimed) or ctx ends.
func (c *Cluster) WaitRoot(ctx context.Context, id node.ID) (NodeRoot, error) {
	r, err := waitMemory(ctx, c, func() (NodeRoot, bool) { r, ok := c.roots[id]; return r, ok })
	if err != nil {
		return NodeRoot{}, fmt.Errorf("node %s: its owner has not published its root: %w", id, err)
	}
	return r, nil
}

// waitMemory calls get under c's lock until it finds what it looks for, after
// each change of memory, or until ctx ends.
func waitMemory[T any](ctx context.Context, c *Cluster, get func() (T, bool)) (T, error) {
	for {
		c.mu.Lock()
		v, ok := get()
		changed := c.changed
		c.mu.Unlock()
		if ok {
			return v, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}

// Claim makes this server id's owner unless a server already is, in one
// transaction, and returns the owner.
func (c *Cluster) Claim(ctx context.Context, id node.ID) (Owner, error) {
	if o, ok := c.Owner(id); ok {
		return o, nil
	}
	key := c.nodeKey(id, "owner")
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, c.self.Server)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		c.setUp(false)
		return Owner{}, fmt.Errorf("claim node %s: %w: %w", id, ErrUnavailable, err)
	}
	c.setUp(true)
	name := c.self.Server
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 {
			return Owner{}, fmt.Errorf("claim node %s: owner key without a value", id)
		}
		name = string(kvs[0].Value)
	}
	c.mu.Lock()
	c.owners[id] = name
	addr := c.servers[name]
	c.mu.Unlock()
	return Owner{Server: name, Address: addr}, nil
}

// Publish records id's root as this server (its owner) made it, for the
// other servers' renders.
func (c *Cluster) Publish(ctx context.Context, id node.ID, r NodeRoot) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Only while this server owns it: a node moved meanwhile is the new
	// owner's to describe.
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(c.nodeKey(id, "owner")), "=", c.self.Server)).
		Then(clientv3.OpPut(c.nodeKey(id, "root"), string(b))).
		Commit()
	if err != nil {
		c.setUp(false)
		return fmt.Errorf("publish node %s: %w: %w", id, ErrUnavailable, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("publish node %s: this server (%s) does not own it", id, c.self.Server)
	}
	c.mu.Lock()
	c.roots[id] = r
	c.mu.Unlock()
	return nil
}

// Unpublish withdraws the root this server published for id (it released
// it): the other servers then ask for it again before they render the node.
func (c *Cluster) Unpublish(ctx context.Context, id node.ID) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(c.nodeKey(id, "owner")), "=", c.self.Server)).
		Then(clientv3.OpDelete(c.nodeKey(id, "root"))).
		Commit()
	if err == nil {
		c.mu.Lock()
		delete(c.roots, id)
		c.mu.Unlock()
	}
	return err
}

// Move hands id to server to, which must have registered: its root
// there is made fresh at its next boot. It returns the previous owner.
func (c *Cluster) Move(ctx context.Context, id node.ID, to string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	owner := c.nodeKey(id, "owner")
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(c.prefix+"servers/"+to), ">", 0)).
		Then(clientv3.OpGet(owner), clientv3.OpPut(owner, to), clientv3.OpDelete(c.nodeKey(id, "root"))).
		Commit()
	if err != nil {
		return "", fmt.Errorf("move node %s: %w: %w", id, ErrUnavailable, err)
	}
	if !resp.Succeeded {
		return "", fmt.Errorf("move node %s: no server named %q has registered", id, to)
	}
	prev := ""
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		prev = string(kvs[0].Value)
	}
	return prev, nil
}

// Servers is every registered server's address, by name.
func (c *Cluster) Servers() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.servers)
}
