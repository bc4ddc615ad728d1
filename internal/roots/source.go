package roots

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// readSource feeds every entry of source (a directory, or a tar archive:
// plain, gzip or zstd, told by its first bytes) to put, in order.
func readSource(ctx context.Context, source string, put func(*entry) error) error {
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if fi.IsDir() {
		return walkDir(ctx, source, put)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("source %s: neither a directory nor a tar archive (a %s)", source, fi.Mode().Type())
	}
	f, err := os.Open(source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer f.Close()
	r, err := decompress(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("source %s: %w", source, err)
	}
	if err := readTar(ctx, r, put); err != nil {
		return fmt.Errorf("source %s: %w", source, err)
	}
	return nil
}

// Magic numbers of the compressions a tar may come in.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func decompress(br *bufio.Reader) (io.Reader, error) {
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return br, nil
}

// readTar reads a tar stream to its end: a truncated archive, a member
// whose data is shorter than its header says, or garbage where a header
// should be (as a member longer than declared leaves) is an error.
func readTar(ctx context.Context, r io.Reader, put func(*entry) error) error {
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return errors.New("an empty archive (or not a tar archive)")
			}
			// archive/tar takes an end of input at a header boundary
			// for the end of the archive; a whole archive ends with two
			// zero blocks.
			if !tail.endMarker() {
				return fmt.Errorf("tar, after %d members: %w (no end-of-archive marker: truncated)", n, io.ErrUnexpectedEOF)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar, after %d members: %w", n, err)
		}
		e := &entry{
			name: h.Name, typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, mtime: h.ModTime,
			link: h.Linkname, major: h.Devmajor, minor: h.Devminor, size: h.Size, body: tr,
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.xattrs == nil {
					e.xattrs = map[string]string{}
				}
				e.xattrs[name] = v
			}
		}
		switch h.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeGNUSparse:
			// archive/tar expands a sparse member into its full size,
			// holes read as zeros; the writer leaves them holes again.
			e.typ = tar.TypeReg
		}
		if e.typ != tar.TypeReg && e.typ != tar.TypeRegA {
			e.size, e.body = 0, nil
		}
		if err := put(e); err != nil {
			return err
		}
	}
}

// tailReader remembers the last 1,024 bytes read through it: a tar
// archive's end marker.
type tailReader struct {
	r    io.Reader
	tail [1024]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n >= len(t.tail) {
		copy(t.tail[:], p[n-len(t.tail):n])
	} else if n > 0 {
		copy(t.tail[:], t.tail[n:])
		copy(t.tail[len(t.tail)-n:], p[:n])
	}
	t.n += int64(n)
	return n, err
}

// endMarker: the input ended with two zero blocks at a block boundary.
func (t *tailReader) endMarker() bool {
	if t.n < int64(len(t.tail)) || t.n%512 != 0 {
		return false
	}
	for _, c := range t.tail {
		if c != 0 {
			return false
		}
	}
	return true
}

// walkDir feeds a directory tree, parents before children, without
// following any symlink. Hard links become TypeLink entries to the first
// name of their inode; sockets are skipped (tar has no type for them, and
// a socket in a golden root is a leftover of a process that ran in it).
func walkDir(ctx context.Context, src string, put func(*entry) error) error {
	type inode struct{ dev, ino uint64 }
	first := map[inode]string{}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		e := &entry{
			name: filepath.ToSlash(rel), mode: int64(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid),
			mtime: time.Unix(st.Mtim.Unix()),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.typ = tar.TypeDir
		case unix.S_IFLNK:
			e.typ = tar.TypeSymlink
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			e.typ = map[uint32]byte{unix.S_IFCHR: tar.TypeChar, unix.S_IFBLK: tar.TypeBlock, unix.S_IFIFO: tar.TypeFifo}[st.Mode&unix.S_IFMT]
			e.major, e.minor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFSOCK:
			return nil
		case unix.S_IFREG:
			id := inode{st.Dev, st.Ino}
			if name, ok := first[id]; ok && st.Nlink > 1 {
				e.typ, e.link = tar.TypeLink, name
				return put(e)
			}
			if st.Nlink > 1 {
				first[id] = e.name
			}
			e.typ, e.size = tar.TypeReg, st.Size
		}
		if e.typ != tar.TypeSymlink {
			if e.xattrs, err = readXattrs(p); err != nil {
				return err
			}
		}
		if e.typ != tar.TypeReg {
			return put(e)
		}
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		e.body, e.clone = f, f
		return put(e)
	})
}

// readXattrs lists every extended attribute of p (not following a
// symlink): security.capability, ACLs (system.posix_acl_*), user.*.
func readXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(p, name, v); err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		out[name] = string(v[:n])
	}
	return out, nil
}
