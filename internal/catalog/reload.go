package catalog

import (
	"slices"

	"github.com/pxebootfs/pxebootfs/config"
)

// SetConfig switches the catalog to cfg's template, ethers, static_dir and
// allow list, for an admin's reload. Everything is loaded and checked first;
// on error nothing changes and the current config keeps serving. Later
// automatic reloads (Watch) follow cfg's files.
//
// Other keys of cfg are not looked at: deciding which keys may change while
// running is the caller's business.
func (c *Catalog) SetConfig(cfg *config.Config) error {
	s, err := c.load(cfg)
	if err != nil {
		return err
	}
	c.cur.Store(s)
	c.changed()
	return nil
}

// OnChange registers f to run after every change of what names hold (a
// reload, SetConfig), once the new content is being served. The FUSE
// side uses it to drop what the kernel caches.
func (c *Catalog) OnChange(f func()) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.subs = append(c.subs, f)
}

func (c *Catalog) changed() {
	c.subMu.Lock()
	subs := slices.Clone(c.subs)
	c.subMu.Unlock()
	for _, f := range subs {
		f()
	}
}

// Config returns the config currently serving: the one given to New or the
// last SetConfig.
func (c *Catalog) Config() *config.Config { return c.cur.Load().cfg }
