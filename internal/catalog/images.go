package catalog

import (
	"fmt"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/image"
)

// loadImages reads the boot image index when tftp_root is set, and watches
// it: an import or `image use` makes a new version current, and the next
// reload (within a second) serves configs naming it.
func loadImages(cfg *config.Config, s *snapshot) error {
	if cfg.TFTPRoot == "" {
		return nil
	}
	st, err := image.FromConfig(cfg)
	if err != nil {
		return fmt.Errorf("config %s: %w", cfg.File, err)
	}
	s.stamps[st.IndexPath()] = stampOf(st.IndexPath())
	ix, err := st.Load()
	if err != nil {
		return err
	}
	s.images, s.imagesRel, s.imagesIndex = ix, st.Rel(), st.IndexPath()
	return nil
}
