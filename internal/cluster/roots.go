package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// Root generations and boot image versions in cluster mode. What must
// agree is which generation of each root (version of each image) is
// current; their files are each server's own. An admin's import or use on
// any server sets the desired one (KIND/NAME/desired, KIND being roots or
// images), with the sources it was imported from; every server's daemon
// imports them itself if it lacks it (the same content gives the same
// name), makes it current only once it is complete, and reports what it
// serves (KIND/NAME/servers/SERVER).

// Kinds of versioned things that follow the cluster.
const (
	KindRoots  = "roots"
	KindImages = "images"
)

// Desired is the generation of a root (version of an image) every server
// should make current.
type Desired struct {
	Gen    string `json:"gen"`
	Source string `json:"source,omitempty"` // a root's: what it was imported from; every server reads it itself
	// An image's files: FILE -> source, and their sha256.
	Files  map[string]string `json:"files,omitempty"`
	SHA256 map[string]string `json:"sha256,omitempty"`
	// Import options the source needs on every server.
	Platform         string `json:"platform,omitempty"`
	Force            bool   `json:"force,omitempty"`
	NoKernelCheck    bool   `json:"no_kernel_check,omitempty"`
	InsecureRegistry bool   `json:"insecure_registry,omitempty"`
	By               string `json:"by"` // the server the admin ran it on
}

// State is what one server reports of a root or an image.
type State struct {
	Current string    `json:"current"`         // the generation it serves as current
	Pending string    `json:"pending"`         // the desired one it is importing, if any
	Error   string    `json:"error,omitempty"` // why the desired one is not current
	Time    time.Time `json:"time"`
}

// SetDesired makes d the desired generation of root (kind KindRoots) or
// version of image (KindImages) name on every server.
func (c *Cluster) SetDesired(ctx context.Context, kind, name string, d Desired) error {
	d.By = c.self.Server
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.cli.Put(ctx, c.prefix+kind+"/"+name+"/desired", string(b)); err != nil {
		return fmt.Errorf("%s %s: set the cluster's version: %w: %w", kind, name, ErrUnavailable, err)
	}
	return nil
}

// DesiredOf is every root's (image's) desired generation (version) as
// last seen.
func (c *Cluster) DesiredOf(kind string) map[string]Desired {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.desired[kind])
}

// States is what each server reported of root (image) name, by server.
func (c *Cluster) States(kind, name string) map[string]State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.states[kind+"/"+name])
}

// Report records what this server serves of root (image) name.
func (c *Cluster) Report(ctx context.Context, kind, name string, st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err = c.cli.Put(ctx, c.prefix+kind+"/"+name+"/servers/"+c.self.Server, string(b))
	return err
}

// Changed is signalled (without blocking; one pending signal) when a
// desired generation of kind changes.
func (c *Cluster) Changed(kind string) <-chan struct{} { return c.kindChanged[kind] }

// applyDesiredLocked applies a key under roots/ or images/.
func (c *Cluster) applyDesiredLocked(parts []string, value []byte, deleted bool) {
	kind, name := parts[0], parts[1]
	switch {
	case len(parts) == 3 && parts[2] == "desired":
		if deleted {
			delete(c.desired[kind], name)
		} else {
			var d Desired
			if err := json.Unmarshal(value, &d); err != nil {
				c.log.Warn("cluster: ignoring a desired version that does not parse", "kind", kind, "name", name, "err", err)
				return
			}
			c.desired[kind][name] = d
		}
		select {
		case c.kindChanged[kind] <- struct{}{}:
		default:
		}
	case len(parts) == 4 && parts[2] == "servers":
		key := kind + "/" + name
		if c.states[key] == nil {
			c.states[key] = map[string]State{}
		}
		if deleted {
			delete(c.states[key], parts[3])
			return
		}
		var st State
		if err := json.Unmarshal(value, &st); err == nil {
			c.states[key][parts[3]] = st
		}
	}
}
