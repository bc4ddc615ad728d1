package nfsexport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
)

// Export is one directory exported to one client with one fsid.
type Export struct {
	// Path is the exported directory: absolute, clean, and made only of
	// the characters ValidatePath accepts.
	Path string
	// Client is the single IPv4 address the export is visible to.
	Client netip.Addr
	// FSID identifies the export's filesystem to NFS clients; it must
	// stay the same across server restarts so that a node's file handles
	// stay valid, and differ between exports.
	FSID uint32
}

// String formats e for logs and errors as CLIENT:PATH(fsid=N).
func (e Export) String() string {
	return fmt.Sprintf("%s:%s(fsid=%d)", e.Client, e.Path, e.FSID)
}

// Validate checks e's path and client, not its fsid (which Unexport ignores).
func (e Export) Validate() error {
	if err := ValidatePath(e.Path); err != nil {
		return err
	}
	return ValidateClient(e.Client)
}

// Exporter exports node roots over NFS. Implementations are safe for
// concurrent use.
type Exporter interface {
	// Export makes e visible to e.Client. Exporting again with the same
	// Export succeeds.
	Export(ctx context.Context, e Export) error
	// Unexport removes the export of e.Path to e.Client, whatever its
	// fsid. An absent export is success.
	Unexport(ctx context.Context, e Export) error
	// Exported reports whether e.Path is exported to e.Client with fsid
	// e.FSID.
	Exported(ctx context.Context, e Export) (bool, error)
	// List returns the exports the backend sees that an Export can
	// describe (single IPv4 client, numeric fsid).
	List(ctx context.Context) ([]Export, error)
	// UsedFSIDs maps every fsid used by an export on the server, whoever
	// made it, to one path that uses it, so that new exports can avoid
	// them.
	UsedFSIDs(ctx context.Context) (map[uint32]string, error)
	// Name names the backend for logs and configuration ("exportfs").
	Name() string
}

// Initer is implemented by backends that must read the server's state
// once before the first export (Ganesha tells its exports of roots not yet
// mounted from live ones). Callers run Init before restoring any node.
type Initer interface {
	Init(ctx context.Context) error
}

// Unlisted is implemented by backends whose List says nothing about
// whether a root is exported (None exports nothing, yet every root is
// "exported"), so status shows "unknown" rather than "no".
type Unlisted interface {
	Unlisted()
}

// ErrInvalidExport is wrapped by every error about an Export that can never
// be exported (bad path, bad client, fsid 0).
var ErrInvalidExport = errors.New("invalid export")

// ValidatePath accepts only absolute, clean paths other than "/" whose bytes
// are ASCII letters, digits or one of "/._-+@=~%". Everything else could be
// mangled on its way through exportfs's command line (":" and "(" split
// CLIENT:PATH and options), etab and exports(5) files (whitespace, quotes,
// backslash escapes, "#" comments, "," and parentheses), or is a wildcard.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path", ErrInvalidExport)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%w: path %q is not absolute", ErrInvalidExport, p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%w: path %q is not clean (want %q)", ErrInvalidExport, p, filepath.Clean(p))
	case p == "/":
		// A node must never get the whole server.
		return fmt.Errorf("%w: path \"/\" is the server's root directory; refusing to export it", ErrInvalidExport)
	}
	for i := 0; i < len(p); i++ {
		if !pathByteOK(p[i]) {
			return fmt.Errorf("%w: path %q has character %q at byte %d, which exportfs or exports files would mangle", ErrInvalidExport, p, p[i], i)
		}
	}
	return nil
}

func pathByteOK(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '/', '.', '_', '-', '+', '@', '=', '~', '%':
		return true
	}
	return false
}

// ValidateClient accepts a single, specified, unicast IPv4 address: an
// export is for one node only. IPv4-mapped IPv6 addresses are rejected
// rather than unmapped, so that what exportfs lists is what was asked for.
func ValidateClient(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%w: no client address", ErrInvalidExport)
	case !a.Is4():
		return fmt.Errorf("%w: client %s is not an IPv4 address", ErrInvalidExport, a)
	case a.IsUnspecified():
		return fmt.Errorf("%w: client %s is unspecified (it would mean every host)", ErrInvalidExport, a)
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: client %s is not a single host", ErrInvalidExport, a)
	}
	return nil
}

// None is the backend for "export = none": nodes' roots are served some
// other way, so there is nothing to export. Export and Unexport do nothing
// and succeed; Exported reports true, because an export that needs nothing is
// always in place (callers that ensure "exported, else export" then do
// nothing); List and UsedFSIDs are empty.
type None struct{}

var (
	_ Exporter = None{}
	_ Unlisted = None{}
	_ Exporter = (*Exportfs)(nil)
)

// Export does nothing.
func (None) Export(context.Context, Export) error { return nil }

// Unexport does nothing.
func (None) Unexport(context.Context, Export) error { return nil }

// Exported reports true: nothing is needed.
func (None) Exported(context.Context, Export) (bool, error) { return true, nil }

// List returns no exports.
func (None) List(context.Context) ([]Export, error) { return nil, nil }

// UsedFSIDs returns an empty map.
func (None) UsedFSIDs(context.Context) (map[uint32]string, error) {
	return map[uint32]string{}, nil
}

// Unlisted marks None as saying nothing through List.
func (None) Unlisted() {}

// Name returns "none".
func (None) Name() string { return "none" }
