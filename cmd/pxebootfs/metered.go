package main

import (
	"context"
	"errors"

	"github.com/pxebootfs/pxebootfs/fs"
	"github.com/pxebootfs/pxebootfs/internal/catalog"
	"github.com/pxebootfs/pxebootfs/internal/metrics"
)

// meteredSource counts what the filesystem asks of the catalog: every name
// resolution (lookup, stat, open), every file opened for reading, every
// template render. It sits between fs and catalog so that neither needs to
// know about metrics.
type meteredSource struct {
	*catalog.Catalog
	m      *metrics.Metrics
	loader string // the loader label: the catalog's loader's name
}

var _ fs.Source = meteredSource{}

func resultOf(err error, ok string) string {
	switch {
	case err == nil:
		return ok
	case errors.Is(err, catalog.ErrNotServed):
		return metrics.ResultNotFound
	}
	return metrics.ResultError
}

// Resolve counts a lookup by result.
func (s meteredSource) Resolve(ctx context.Context, name string) (catalog.Entry, error) {
	e, err := s.Catalog.Resolve(ctx, name)
	s.m.Lookup(s.loader, resultOf(err, metrics.ResultServed))
	return e, err
}

// Peek of a node name renders the template: a lookup finds the version
// it holds.
func (s meteredSource) Peek(e catalog.Entry) (catalog.Content, error) {
	c, err := s.Catalog.Peek(e)
	if e.Kind == catalog.KindNode {
		s.m.Render(s.loader, err)
	}
	return c, err
}

// Open counts a read by kind and result; a node's open renders once more.
func (s meteredSource) Open(ctx context.Context, e catalog.Entry) (catalog.Opened, error) {
	b, err := s.Catalog.Open(ctx, e)
	kind := "other"
	switch e.Kind {
	case catalog.KindNode:
		kind = metrics.KindNode
		if err == nil {
			s.m.Render(s.loader, nil)
		}
	case catalog.KindStatic:
		kind = metrics.KindStatic
	}
	s.m.Read(s.loader, kind, resultOf(err, metrics.ResultOK))
	return b, err
}
