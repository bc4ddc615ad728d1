package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// Root generations in cluster mode. What must agree is which generation of
// each root is current; the generations' files are each server's own. An
// admin's `root import` or `root use` on any server sets the desired
// generation (roots/NAME/desired), with the source it was imported from;
// every server's daemon imports that source itself if it lacks the
// generation (the same content gives the same generation name), makes it
// current only once it is complete, and reports what it serves
// (roots/NAME/servers/SERVER).

// Desired is the generation of a root every server should make current.
type Desired struct {
	Gen    string `json:"gen"`
	Source string `json:"source"` // what it was imported from; every server reads it itself
	// Import options the source needs on every server.
	Platform         string `json:"platform,omitempty"`
	Force            bool   `json:"force,omitempty"`
	NoKernelCheck    bool   `json:"no_kernel_check,omitempty"`
	InsecureRegistry bool   `json:"insecure_registry,omitempty"`
	By               string `json:"by"` // the server the admin ran it on
}

// RootState is what one server reports of a root.
type RootState struct {
	Current string    `json:"current"`         // the generation it serves as current
	Pending string    `json:"pending"`         // the desired one it is importing, if any
	Error   string    `json:"error,omitempty"` // why the desired one is not current
	Time    time.Time `json:"time"`
}

// SetDesired makes gen the desired generation of root name on every
// server.
func (c *Cluster) SetDesired(ctx context.Context, name string, d Desired) error {
	d.By = c.self.Server
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.cli.Put(ctx, c.prefix+"roots/"+name+"/desired", string(b)); err != nil {
		return fmt.Errorf("root %s: set the cluster's generation: %w: %w", name, ErrUnavailable, err)
	}
	return nil
}

// DesiredRoots is every root's desired generation as last seen.
func (c *Cluster) DesiredRoots() map[string]Desired {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.desired)
}

// RootStates is what each server reported of root name, by server.
func (c *Cluster) RootStates(name string) map[string]RootState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.rootStates[name])
}

// ReportRoot records what this server serves of root name.
func (c *Cluster) ReportRoot(ctx context.Context, name string, st RootState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err = c.cli.Put(ctx, c.prefix+"roots/"+name+"/servers/"+c.self.Server, string(b))
	return err
}

// RootsChanged is signalled (without blocking; one pending signal) when a
// desired generation changes.
func (c *Cluster) RootsChanged() <-chan struct{} { return c.rootsChanged }

// applyRootLocked applies a key under roots/.
func (c *Cluster) applyRootLocked(parts []string, value []byte, deleted bool) {
	name := parts[1]
	switch {
	case len(parts) == 3 && parts[2] == "desired":
		if deleted {
			delete(c.desired, name)
		} else {
			var d Desired
			if err := json.Unmarshal(value, &d); err != nil {
				c.log.Warn("cluster: ignoring a desired generation that does not parse", "root", name, "err", err)
				return
			}
			c.desired[name] = d
		}
		select {
		case c.rootsChanged <- struct{}{}:
		default:
		}
	case len(parts) == 4 && parts[2] == "servers":
		if c.rootStates[name] == nil {
			c.rootStates[name] = map[string]RootState{}
		}
		if deleted {
			delete(c.rootStates[name], parts[3])
			return
		}
		var st RootState
		if err := json.Unmarshal(value, &st); err == nil {
			c.rootStates[name][parts[3]] = st
		}
	}
}
