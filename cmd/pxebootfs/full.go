package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/pxebootfs/pxebootfs/catalog"
	"github.com/pxebootfs/pxebootfs/config"
)

// newProvisioner builds the provisioner for full mode, or nil in config-only
// mode. The returned func releases it (not the node roots: those stay).
func newProvisioner(ctx context.Context, cfg *config.Config, log *slog.Logger) (catalog.Provisioner, func(), error) {
	if !cfg.FullMode() {
		return nil, func() {}, nil
	}
	return nil, nil, errors.New("full mode is not implemented yet")
}

// newPeeker gives `render` the side-effect-free view of full mode.
func newPeeker(cfg *config.Config) (catalog.Provisioner, error) {
	return nil, nil
}

// checkFull checks what full mode needs.
func checkFull(cfg *config.Config) []string {
	return nil
}
