package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// The journal makes a change cost O(1) bytes on disk instead of a rewrite
// of every node's record: nodes.json is a snapshot as of sequence number
// Seq, and nodes.journal holds the changes made since, one JSON line each,
// appended and fsynced (in groups, see commitLocked). When the journal has
// grown to several times the snapshot, the state is compacted: a new
// snapshot is written atomically, then an empty journal replaces the old
// one atomically. A crash between the two leaves a snapshot newer than the
// journal's records, which replay skips by their sequence numbers.
//
// Journal lines:
//
//	{"base":S}                          first line: the journal continues snapshot S
//	{"seq":N,"put":{record}}            node record created or changed
//	{"seq":N,"forget":"HEX","fsid":F}   node forgotten, its fsid retired
//
// A last line without its newline is a write the crash cut short (never
// acknowledged): it is ignored. Any other line that does not parse is an
// error, like a snapshot that does not parse.

const journalName = "nodes.journal"

type journalLine struct {
	Base   *uint64     `json:"base,omitempty"`
	Seq    uint64      `json:"seq,omitempty"`
	Put    *diskRecord `json:"put,omitempty"`
	Forget *node.ID    `json:"forget,omitempty"`
	FSID   uint32      `json:"fsid,omitempty"`
}

// errJournalAhead: the journal continues a newer snapshot than the one
// read. A reader without the lock raced a compaction; it reads again.
var errJournalAhead = errors.New("journal is newer than the snapshot")

func putLine(seq uint64, rec Record) []byte {
	b, _ := json.Marshal(journalLine{Seq: seq, Put: &diskRecord{IP: rec.ID.Addr(), Record: rec}})
	return append(b, '\n')
}

func forgetLine(seq uint64, id node.ID, fsid uint32) []byte {
	b, _ := json.Marshal(journalLine{Seq: seq, Forget: &id, FSID: fsid})
	return append(b, '\n')
}

func headerLine(base uint64) []byte {
	b, _ := json.Marshal(journalLine{Base: &base})
	return append(b, '\n')
}

// readJournal applies the journal in dir to st (read from the snapshot).
// A missing journal is an empty one (a state_dir of an older version).
func readJournal(dir string, st *state) error {
	path := filepath.Join(dir, journalName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	r := bufio.NewReader(bytes.NewReader(data))
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return nil // a last line without newline was cut short: ignore it
		}
		var l journalLine
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if n == 1 {
			if l.Base == nil {
				return fmt.Errorf("%s:1: no base line", path)
			}
			if *l.Base > st.seq {
				return fmt.Errorf("%s: continues snapshot %d, but %s is snapshot %d: %w", path, *l.Base, fileName, st.seq, errJournalAhead)
			}
			continue
		}
		if l.Seq <= st.seq {
			continue // already in the snapshot
		}
		if err := st.apply(l); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		st.seq = l.Seq
	}
}

// apply replays one change, checking the invariants decodeState checks.
func (st *state) apply(l journalLine) error {
	switch {
	case l.Put != nil:
		n := l.Put.Record
		if !n.ID.IsValid() {
			return fmt.Errorf("record without a node")
		}
		if l.Put.IP.IsValid() && l.Put.IP != n.ID.Addr() {
			return fmt.Errorf("node %s: ip %s does not match the node name", n.ID, l.Put.IP)
		}
		if other, ok := st.fsids[n.FSID]; ok && other != n.ID {
			return fmt.Errorf("fsid %d used by both %s and %s", n.FSID, other, n.ID)
		}
		if _, ok := st.retired[n.FSID]; ok {
			return fmt.Errorf("node %s has retired fsid %d", n.ID, n.FSID)
		}
		// A node without a root (fsid 0: install mode only) may get its
		// fsid later; one it has is kept for good.
		if old, ok := st.nodes[n.ID]; ok && old.n.FSID != 0 && old.n.FSID != n.FSID {
			return fmt.Errorf("node %s changed its fsid from %d to %d", n.ID, old.n.FSID, n.FSID)
		}
		st.nodes[n.ID] = &entry{n: n}
		if n.FSID != 0 {
			st.fsids[n.FSID] = n.ID
		}
	case l.Forget != nil:
		e, ok := st.nodes[*l.Forget]
		if !ok || e.n.FSID != l.FSID {
			return fmt.Errorf("forget of %s (fsid %d), which is not known so", *l.Forget, l.FSID)
		}
		delete(st.nodes, *l.Forget)
		if l.FSID != 0 {
			delete(st.fsids, l.FSID)
			st.retired[l.FSID] = struct{}{}
		}
	default:
		return fmt.Errorf("line %+v is neither put nor forget", l)
	}
	return nil
}

// loadDir reads the snapshot and the journal of dir. Without the lock a
// compaction may run meanwhile; the read is then retried.
func loadDir(dir string) (*state, error) {
	for attempt := 0; ; attempt++ {
		st, err := readState(filepath.Join(dir, fileName))
		if err != nil {
			return nil, err
		}
		err = readJournal(dir, st)
		if errors.Is(err, errJournalAhead) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
		return st, nil
	}
}

// compact writes st as the new snapshot and replaces the journal with an
// empty one continuing it. The caller holds the lock.
func compact(dir string, nodes []Record, retired []uint32, seq uint64) (snapBytes int64, err error) {
	data, err := encodeState(nodes, retired, seq)
	if err != nil {
		return 0, err
	}
	if err := writeSnapshot(dir, data); err != nil {
		return 0, err
	}
	if err := writeJournalHeader(dir, seq); err != nil {
		return 0, err
	}
	return int64(len(data)), nil
}
