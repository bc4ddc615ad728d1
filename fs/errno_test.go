package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"syscall"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/catalog"
)

// TestToErrno covers every mapping of the one errno helper, for every
// operation (lookup, getattr, open) alike.
func TestToErrno(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"plain EROFS", syscall.EROFS, syscall.EROFS},
		{"wrapped EACCES survives", fmt.Errorf("a: %w", fmt.Errorf("b: %w", syscall.EACCES)), syscall.EACCES},
		{"wrapped ENAMETOOLONG survives", fmt.Errorf("x: %w", syscall.ENAMETOOLONG), syscall.ENAMETOOLONG},
		{"wrapped EIO is EIO, not ENOSYS", fmt.Errorf("render x: %w", syscall.EIO), syscall.EIO},
		{"an errno deep in provisioning is EIO", fmt.Errorf("mount overlay: %w", syscall.EBUSY), syscall.EIO},
		{"not exist", fmt.Errorf("x: %w", iofs.ErrNotExist), syscall.ENOENT},
		{"not served", fmt.Errorf("x: %w", catalog.ErrNotServed), syscall.ENOENT},
		{"wrapped ENOENT", fmt.Errorf("x: %w", syscall.ENOENT), syscall.ENOENT},
		{"canceled (FUSE interrupt)", fmt.Errorf("x: %w", context.Canceled), syscall.EINTR},
		{"deadline (a generator or provisioning ran out of time)", fmt.Errorf("x: %w", context.DeadlineExceeded), syscall.EIO},
		{"anything else is EIO, never ENOSYS", fmt.Errorf("exportfs failed"), syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toErrno(tt.err); got != tt.want {
				t.Errorf("toErrno(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
