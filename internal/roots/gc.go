package roots

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Pins are the nodes pinned to each generation, from the registry: the
// generations nothing may remove.
type Pins map[Pin][]string

// Policy is what garbage collection keeps besides pinned and current
// generations: the Keep newest of each root, and any that stopped being
// current less than Grace ago.
type Policy struct {
	Keep  int
	Grace time.Duration
}

// Use makes gen root name's current generation (a rollback or a roll
// forward) and returns the previous one. New nodes and reset nodes get it;
// running nodes keep theirs.
func (s *Store) Use(name, gen string, now time.Time) (previous string, err error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	if err := CheckGen(gen); err != nil {
		return "", err
	}
	err = s.update(func(ix *Index) error {
		r := ix.Roots[name]
		if r == nil {
			return fmt.Errorf("root %q: %w", name, ErrNotFound)
		}
		g := r.Generations[gen]
		if g == nil {
			return fmt.Errorf("root %q generation %s: %w (pxebootfs root list %s)", name, gen, ErrNotFound, name)
		}
		if _, err := s.Path(Pin{name, gen}); err != nil {
			return err
		}
		previous = r.Current
		if previous == gen {
			return nil
		}
		if p := r.Generations[previous]; p != nil {
			p.Replaced = now
		}
		g.Replaced = time.Time{}
		r.Current = gen
		return nil
	})
	return previous, err
}

// Remove deletes generation gen of root name, or with gen "" the whole root.
// A generation nodes are pinned to is never removed (ErrPinned, naming
// them); the current one only with force (new nodes could not be given
// this root until another is imported or used).
func (s *Store) Remove(name, gen string, force bool, pins Pins) (removed []string, err error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if gen != "" {
		if err := CheckGen(gen); err != nil {
			return nil, err
		}
	}
	err = s.update(func(ix *Index) error {
		r := ix.Roots[name]
		if r == nil {
			return fmt.Errorf("root %q: %w", name, ErrNotFound)
		}
		gens := []string{gen}
		if gen == "" {
			gens = newestFirst(r)
		} else if r.Generations[gen] == nil {
			return fmt.Errorf("root %q generation %s: %w", name, gen, ErrNotFound)
		}
		for _, g := range gens {
			if nodes := pins[Pin{name, g}]; len(nodes) > 0 {
				return fmt.Errorf("root %q generation %s: %w: %s (reset or upgrade them first)", name, g, ErrPinned, strings.Join(nodes, ", "))
			}
			if g == r.Current && !force {
				return fmt.Errorf("root %q generation %s is current: new nodes get it (use another first, or -force)", name, g)
			}
		}
		for _, g := range gens {
			if err := s.removeGen(Pin{name, g}); err != nil {
				return err
			}
			delete(r.Generations, g)
			if r.Current == g {
				r.Current = ""
			}
			removed = append(removed, g)
		}
		if len(r.Generations) == 0 {
			delete(ix.Roots, name)
			_ = os.Remove(filepath.Join(s.dir, name))
		}
		return nil
	})
	return removed, err
}

// removeGen unmounts a generation's seal and deletes it: renamed into
// staging first, so a crash halfway leaves no half-deleted generation
// under its name (staging is cleaned at the next import or start).
func (s *Store) removeGen(p Pin) error {
	dir := s.genDir(p)
	if err := unseal(dir); err != nil {
		return err
	}
	aside, err := s.newStaging(p.Root + "-removed")
	if err != nil {
		return err
	}
	if err := os.Remove(aside); err != nil {
		return err
	}
	if err := os.Rename(dir, aside); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove root %s: %w", p, err)
	}
	return removeTree(aside)
}

// Prune removes every generation the policy does not keep: not pinned, not
// current, not among the Keep newest of its root, and replaced at least
// Grace ago. It returns what it removed by root.
func (s *Store) Prune(p Policy, pins Pins, now time.Time) (map[string][]string, error) {
	removed := map[string][]string{}
	err := s.update(func(ix *Index) error {
		for _, name := range ix.Names() {
			r := ix.Roots[name]
			for i, g := range newestFirst(r) {
				gen := r.Generations[g]
				if g == r.Current || i < p.Keep || len(pins[Pin{name, g}]) > 0 || now.Sub(gen.Replaced) < p.Grace {
					continue
				}
				if err := s.removeGen(Pin{name, g}); err != nil {
					return err
				}
				delete(r.Generations, g)
				removed[name] = append(removed[name], g)
			}
		}
		return nil
	})
	return removed, err
}

// Listing is one generation as `pxebootfs root list` shows it.
type Listing struct {
	Name       string    `json:"name"`
	Generation string    `json:"generation"`
	Current    bool      `json:"current"`
	Nodes      []string  `json:"nodes"` // pinned to it
	Size       int64     `json:"size"`
	Files      int       `json:"files"`
	Imported   time.Time `json:"imported,omitzero"`
	Source     string    `json:"source"`
	Replaced   time.Time `json:"replaced,omitzero"`
	Kernel     string    `json:"kernel,omitempty"`
	Initrd     string    `json:"initrd,omitempty"`
	Image      *Origin   `json:"image,omitempty"` // a container image's reference, digests, platform
	Path       string    `json:"path"`
}

// List lists every generation (of root name only, unless ""), roots by
// name and generations newest first, with the legacy root_dir first.
func (s *Store) List(name string, pins Pins) ([]Listing, error) {
	ix, err := s.Load()
	if err != nil {
		return nil, err
	}
	out := []Listing{}
	if s.legacy != "" && (name == "" || name == Legacy) {
		out = append(out, Listing{Name: Legacy, Generation: LegacyGen, Current: true, Nodes: nodesOf(pins, Pin{}),
			Source: s.legacy + " (root_dir: used as it is, never copied or pruned)", Path: s.legacy})
	}
	for _, n := range ix.Names() {
		if name != "" && n != name {
			continue
		}
		r := ix.Roots[n]
		for _, g := range newestFirst(r) {
			gen := r.Generations[g]
			out = append(out, Listing{Name: n, Generation: g, Current: g == r.Current, Nodes: nodesOf(pins, Pin{n, g}),
				Size: gen.Size, Files: gen.Files, Imported: gen.Imported, Source: gen.Source, Replaced: gen.Replaced,
				Kernel: gen.Kernel, Initrd: gen.Initrd, Image: gen.Image, Path: s.genDir(Pin{n, g})})
		}
	}
	if name != "" && name != Legacy && len(out) == 0 {
		return nil, fmt.Errorf("root %q: %w", name, ErrNotFound)
	}
	return out, nil
}

func nodesOf(pins Pins, p Pin) []string {
	out := slices.Clone(pins[p])
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}

// SealAll seals every generation in the index (bind mounts do not outlive
// a reboot), for the daemon's start.
func (s *Store) SealAll() error {
	if s.dir == "" {
		return nil
	}
	ix, err := s.Load()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range ix.Names() {
		for g := range ix.Roots[n].Generations {
			if _, err := s.Path(Pin{n, g}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
