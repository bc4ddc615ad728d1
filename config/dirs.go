package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Directories pxebootfs creates at start when they are missing. Parse does
// not check them (commands that only read, such as render, must work
// without write access); `pxebootfs check` and `pxebootfs mount` do, with
// CheckDirs, before anything is created.

// dirSpec is a directory mount writes in, with the key naming it.
type dirSpec struct {
	key, path string
	mode      fs.FileMode
}

func (c *Config) writableDirs() []dirSpec {
	dirs := []dirSpec{{"state_dir", c.StateDir, 0o700}}
	if c.FullMode() {
		dirs = append(dirs, dirSpec{"node_dir", c.NodeDir, 0o755}, dirSpec{"overlay_dir", c.OverlayDir, 0o755})
	}
	return dirs
}

// CheckDirs checks that every directory `pxebootfs mount` writes in can be
// used: state_dir (both modes), and in full mode node_dir and overlay_dir.
// Each must be a writable directory, or missing below a writable directory
// (mount creates it). The first problem is returned as an *Error naming the
// file and the key.
func CheckDirs(c *Config) error {
	for _, d := range c.writableDirs() {
		if err := usableDir(d.path); err != nil {
			return &Error{File: c.File, Section: Section, Key: d.key, Reason: err.Error()}
		}
	}
	return nil
}

// usableDir reports why dir cannot be written in or created, or nil. The
// nearest existing ancestor decides: it must be a directory pxebootfs (as
// the current user) can write and search, on a filesystem mounted
// read-write (access(2) says EROFS otherwise).
func usableDir(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a directory", p)
		case err == nil:
			if err := syscall.Access(p, 2|1); err != nil { // W_OK|X_OK
				what := "cannot be written"
				if p != dir {
					what = "cannot be created: " + p + " cannot be written"
				}
				return fmt.Errorf("%s %s: %w", dir, what, &fs.PathError{Op: "access", Path: p, Err: err})
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%s: %w", dir, err)
		case filepath.Dir(p) == p:
			return fmt.Errorf("%s: no existing parent directory", dir)
		}
	}
}

// CreateDirs creates the directories CheckDirs checked, as `pxebootfs
// mount` needs them (state_dir 0700: it holds the node registry and the
// control socket; the others 0755). It returns the topmost directories it
// created, so that a start that fails later can remove them again and
// leave the disk as it found it.
func CreateDirs(c *Config) (created []string, err error) {
	for _, d := range c.writableDirs() {
		top, err := MakeDir(d.path, d.mode)
		if err != nil {
			RemoveCreated(created)
			return nil, err
		}
		if top != "" {
			created = append(created, top)
		}
	}
	return created, nil
}

// MakeDir creates dir and its missing parents with mode, and returns the
// topmost directory it created ("" if dir existed), for RemoveCreated.
func MakeDir(dir string, mode fs.FileMode) (top string, err error) {
	// Only a name that does not exist is made. A dead FUSE mount left by
	// a killed daemon can fail its lookup with another error (seen in
	// TestDisklessRootGenerations: a restart 30 s after the mount was last
	// used got EEXIST from mkdir); it exists, and `pxebootfs mount` clears
	// it, or reports what else is wrong there.
	if _, err := os.Lstat(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || filepath.Dir(p) == p {
			break
		}
		top = p
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	return top, nil
}

// RemoveCreated removes what CreateDirs created, newest first.
func RemoveCreated(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		os.RemoveAll(created[i])
	}
}
