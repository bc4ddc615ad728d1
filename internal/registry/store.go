package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	fileName      = "nodes.json"
	tempPattern   = fileName + ".tmp-*"
	formatVersion = 1
)

// fileFormat is nodes.json on disk.
type fileFormat struct {
	Version      int      `json:"version"`
	Nodes        []Node   `json:"nodes"`
	RetiredFSIDs []uint32 `json:"retired_fsids"`
}

// state is the in-memory form of nodes.json, indexed for allocation.
type state struct {
	nodes   map[string]*entry
	fsids   map[uint32]string   // fsid of every known node -> node
	retired map[uint32]struct{} // fsids of forgotten nodes, never reused
}

type entry struct {
	n Node
	// gen is the generation that created the node: whoever returns it from
	// Allocate must first see that generation on disk.
	gen uint64
}

func newState() *state {
	return &state{
		nodes:   make(map[string]*entry),
		fsids:   make(map[uint32]string),
		retired: make(map[uint32]struct{}),
	}
}

// readState loads path. A missing file is an empty state; anything that
// cannot be trusted is an error naming the file, because starting over would
// hand out fsids that nodes already use.
func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	st, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return st, nil
}

func decodeState(b []byte) (*state, error) {
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("unsupported version %d (want %d)", f.Version, formatVersion)
	}
	st := newState()
	for _, n := range f.Nodes {
		if err := checkNodeName(n.Node); err != nil {
			return nil, err
		}
		if _, dup := st.nodes[n.Node]; dup {
			return nil, fmt.Errorf("node %s listed twice", n.Node)
		}
		if n.FSID == 0 {
			return nil, fmt.Errorf("node %s has fsid 0", n.Node)
		}
		if other, dup := st.fsids[n.FSID]; dup {
			return nil, fmt.Errorf("fsid %d used by both %s and %s", n.FSID, other, n.Node)
		}
		if _, err := nodeIP(n.Node, n.IP); err != nil {
			return nil, err
		}
		st.nodes[n.Node] = &entry{n: n}
		st.fsids[n.FSID] = n.Node
	}
	for _, id := range f.RetiredFSIDs {
		if id == 0 {
			return nil, errors.New("retired fsid 0")
		}
		if node, live := st.fsids[id]; live {
			return nil, fmt.Errorf("fsid %d of node %s is also listed as retired", id, node)
		}
		st.retired[id] = struct{}{}
	}
	return st, nil
}

// encodeState renders a snapshot deterministically (nodes by name, fsids
// ascending) so that the file diffs cleanly and tests can compare it.
func encodeState(nodes []Node, retired []uint32) ([]byte, error) {
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.Node, b.Node) })
	slices.Sort(retired)
	if nodes == nil {
		nodes = []Node{}
	}
	if retired == nil {
		retired = []uint32{}
	}
	b, err := json.MarshalIndent(fileFormat{Version: formatVersion, Nodes: nodes, RetiredFSIDs: retired}, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return append(b, '\n'), nil
}

// writeAtomic replaces dir/name with data so that a crash at any point
// leaves either the old or the new content under that name: the data is
// synced before the rename makes it visible, and the directory is synced so
// the rename itself survives a power loss.
func writeAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, final, err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps deletes temp files a crashed writer left behind. Only the
// lock holder may call it: another holder's temp file would be in use.
func removeStaleTemps(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, tempPattern))
	if err != nil {
		return nil, fmt.Errorf("list temp files: %w", err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale temp file: %w", err)
		}
	}
	return matches, nil
}

// checkNodeName accepts exactly eight upper-case hex digits: the form
// pxelinux asks for, and the only one we store, so that one node cannot be
// recorded twice under two spellings.
func checkNodeName(node string) error {
	if len(node) != 8 {
		return fmt.Errorf("invalid node name %q: want 8 upper-case hex digits", node)
	}
	for _, c := range []byte(node) {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return fmt.Errorf("invalid node name %q: want 8 upper-case hex digits", node)
		}
	}
	return nil
}

// nodeIP returns the dotted IPv4 address node names. An empty ip is derived
// from the name; a given one must agree with it, since a record whose name
// and address disagree would export one node's root to another.
func nodeIP(node, ip string) (string, error) {
	v, err := strconv.ParseUint(node, 16, 32)
	if err != nil {
		return "", fmt.Errorf("invalid node name %q: %w", node, err)
	}
	want := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	if ip == "" {
		return want.String(), nil
	}
	got, err := netip.ParseAddr(ip)
	if err != nil || !got.Is4() {
		return "", fmt.Errorf("node %s: invalid IPv4 address %q", node, ip)
	}
	if got != want {
		return "", fmt.Errorf("node %s: ip %s does not match the node name (want %s)", node, ip, want)
	}
	return want.String(), nil
}

// normMAC stores MACs in one spelling (lower-case, colon-separated) so that
// a changed MAC is a real change, not a different notation.
func normMAC(mac string) (string, error) {
	if mac == "" {
		return "", nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return "", fmt.Errorf("invalid MAC %q: %w", mac, err)
	}
	return hw.String(), nil
}
