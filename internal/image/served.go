package image

import (
	"sync"
	"time"
)

// VersionRef names one version of one image.
type VersionRef struct {
	Image, Version string
}

// Served is the ledger of image versions that served configs named, each
// with the last time it was served. The catalogs note into it as they
// serve (every loader's, so a version only UEFI nodes boot is kept like
// one BIOS nodes boot); the daemon drains it into the index
// (Store.RecordServed) now and then, so a served version's garbage
// collection grace runs from when it was served, not from when it was
// recorded. Safe for concurrent use; the zero value is ready.
type Served struct {
	mu sync.Mutex
	m  map[VersionRef]time.Time
}

// Note records that a config naming used (image name -> version) was
// served at at.
func (s *Served) Note(used map[string]string, at time.Time) {
	if len(used) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, v := range used {
		s.keepLocked(VersionRef{name, v}, at)
	}
}

// Take returns what was noted since the last Take and forgets it.
func (s *Served) Take() map[VersionRef]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	s.m = nil
	return m
}

// Restore puts back what a Take returned and could not be recorded (the
// index was busy), keeping the later time of each version.
func (s *Served) Restore(m map[VersionRef]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, at := range m {
		s.keepLocked(ref, at)
	}
}

// keepLocked notes ref served at at, keeping the later of two times.
func (s *Served) keepLocked(ref VersionRef, at time.Time) {
	if s.m == nil {
		s.m = map[VersionRef]time.Time{}
	}
	if at.After(s.m[ref]) {
		s.m[ref] = at
	}
}
