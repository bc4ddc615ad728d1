package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"syscall"
	"testing"
)

func TestToErrno(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"plain errno", syscall.EROFS, syscall.EROFS},
		{"wrapped EIO survives", fmt.Errorf("render x: %w", syscall.EIO), syscall.EIO},
		{"double wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", syscall.EACCES)), syscall.EACCES},
		{"not exist", fmt.Errorf("x: %w", iofs.ErrNotExist), syscall.ENOENT},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), syscall.EINTR},
		{"anything else is EIO, never ENOSYS", fmt.Errorf("boom"), syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toErrno(tt.err); got != tt.want {
				t.Errorf("toErrno(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestOpenErrno(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"not served", fmt.Errorf("x: %w", iofs.ErrNotExist), syscall.ENOENT},
		{"provisioning failed with an errno inside is still EIO", fmt.Errorf("mount overlay: %w", syscall.EBUSY), syscall.EIO},
		{"plain failure", fmt.Errorf("exportfs failed"), syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := openErrno(tt.err); got != tt.want {
				t.Errorf("openErrno(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
