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

	"github.com/pxebootfs/pxebootfs/internal/atomicfile"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

const (
	fileName      = "nodes.json"
	formatVersion = 1
)

// fileFormat is nodes.json on disk.
type fileFormat struct {
	Version int `json:"version"`
	// Seq is the sequence number of the last journal change the snapshot
	// includes (0 in files of versions before the journal).
	Seq          uint64       `json:"seq,omitempty"`
	Nodes        []diskRecord `json:"nodes"`
	RetiredFSIDs []uint32     `json:"retired_fsids"`
}

// diskRecord is a Record as nodes.json stores it: with the address also
// dotted, for admins reading the file (the hex name is the key).
type diskRecord struct {
	IP netip.Addr `json:"ip"`
	Record
}

// state is the in-memory form of nodes.json, indexed for allocation.
type state struct {
	nodes   map[node.ID]*entry
	fsids   map[uint32]node.ID  // fsid of every known node -> node
	retired map[uint32]struct{} // fsids of forgotten nodes, never reused
	seq     uint64              // last change applied (see journal.go)
}

type entry struct {
	n Record
	// gen is the generation that created the node: whoever returns it from
	// Allocate must first see that generation on disk.
	gen uint64
}

func newState() *state {
	return &state{
		nodes:   make(map[node.ID]*entry),
		fsids:   make(map[uint32]node.ID),
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
	st.seq = f.Seq
	for _, d := range f.Nodes {
		n := d.Record
		if !n.ID.IsValid() {
			return nil, errors.New("a node record has no node name")
		}
		if _, dup := st.nodes[n.ID]; dup {
			return nil, fmt.Errorf("node %s listed twice", n.ID)
		}
		if other, dup := st.fsids[n.FSID]; dup && n.FSID != 0 {
			return nil, fmt.Errorf("fsid %d used by both %s and %s", n.FSID, other, n.ID)
		}
		// A record whose name and address disagree would export one
		// node's root to another: refuse rather than guess which is right.
		if d.IP.IsValid() && d.IP != n.ID.Addr() {
			return nil, fmt.Errorf("node %s: ip %s does not match the node name (want %s)", n.ID, d.IP, n.ID.Addr())
		}
		st.nodes[n.ID] = &entry{n: n}
		if n.FSID != 0 { // 0: no root yet (a node known for its install only)
			st.fsids[n.FSID] = n.ID
		}
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

// encodeState renders a snapshot deterministically (nodes by address, fsids
// ascending) so that the file diffs cleanly and tests can compare it.
func encodeState(nodes []Record, retired []uint32, seq uint64) ([]byte, error) {
	slices.SortFunc(nodes, func(a, b Record) int { return a.ID.Compare(b.ID) })
	slices.Sort(retired)
	disk := make([]diskRecord, len(nodes))
	for i, n := range nodes {
		disk[i] = diskRecord{IP: n.ID.Addr(), Record: n}
	}
	if retired == nil {
		retired = []uint32{}
	}
	b, err := json.MarshalIndent(fileFormat{Version: formatVersion, Seq: seq, Nodes: disk, RetiredFSIDs: retired}, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return append(b, '\n'), nil
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

// writeSnapshot replaces nodes.json atomically.
func writeSnapshot(dir string, data []byte) error {
	return atomicfile.Write(filepath.Join(dir, fileName), data, 0o600)
}

// writeJournalHeader replaces the journal with an empty one continuing
// snapshot base, atomically.
func writeJournalHeader(dir string, base uint64) error {
	return atomicfile.Write(filepath.Join(dir, journalName), headerLine(base), 0o600)
}
