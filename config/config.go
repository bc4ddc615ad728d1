package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/inifile"
	"github.com/pxebootfs/pxebootfs/overlay"
)

// Section is the only section a config file may have; the original tool used
// this name, so existing files keep working.
const Section = "PXEBOOTFS"

// Config is a loaded and validated configuration. Every path is absolute and
// cleaned.
type Config struct {
	File string // absolute path of the loaded file

	PXETemplate string         // template pxelinux configs are rendered from
	StaticDir   string         // hand-written files served as they are; "" if unset
	Ethers      string         // ethers(5) file mapping MACs to IPs; "" if unset
	Allow       []netip.Prefix // IPv4 prefixes served; nil when unset (default policy applies elsewhere)

	// Content from a database: see packages generator and inventory.
	ContentGenerator     string        // program run for names nothing else serves; "" if unset
	GeneratorForNodes    bool          // run it for node names too, before the template
	GeneratorTimeout     time.Duration // longest run, and longest wait for a free slot
	GeneratorTTL         time.Duration // how long a result is reused
	GeneratorConcurrency int           // most programs running at once
	Inventory            string        // node inventory file; "" if unset

	// Full mode: node_dir, overlay_dir and start_fsid, set together, and
	// a root: root_dir, or roots_dir and root.
	NodeDir    string
	RootDir    string // the legacy single root; "" if only named roots are used
	OverlayDir string
	StartFSID  uint32
	RootsDir   string        // named roots with generations; "" if unset
	Root       string        // the default named root; "" means root_dir
	RootKeep   int           // newest generations of a root always kept
	RootGrace  time.Duration // a generation replaced this recently is kept

	StateDir       string
	MaxNodes       int
	OverlayType    string   // OverlayFS or AUFS
	OverlayOptions []string // extra mount options, never lowerdir/upperdir/workdir/br
	Export         string   // ExportFS, ExportGanesha or ExportNone
	ExportOptions  string   // comma-separated, without fsid=
	GaneshaConfig  string   // include file of node EXPORT blocks (export = ganesha)
	GaneshaDBus    string   // D-Bus address of Ganesha's export manager; "" is the system bus

	ResetGuard    time.Duration // a node that booted this recently is not reset unless forced
	ResetOnBoot   bool          // wipe a node's writable layer when it boots again after ResetGuard
	MetricsListen string        // host:port of the Prometheus endpoint; "" when off

	GrubMount     string // GRUB's prefix directory, mounted over; "" when off
	GrubTemplate  string // template of per-node GRUB configs
	GrubStaticDir string // served as it is under the GRUB mount, subdirectories included

	IPXEMount     string // iPXE scripts' directory, served by a web server; "" when off
	IPXETemplate  string // template of per-node iPXE scripts
	IPXEStaticDir string // served as it is under the iPXE mount (boot.ipxe, menus)
	HTTPBase      string // URL of tftp_root over HTTP, with a trailing '/': {{imageURL}}; "" if unset

	TFTPRoot   string        // the tftpd's root; "" when images are not used
	ImagesDir  string        // boot image versions, inside TFTPRoot
	ImageKeep  int           // newest versions of an image always kept
	ImageGrace time.Duration // a version served this recently is kept

	// Install mode: see package install.
	InstallTemplate     string // pxelinux template of nodes in install mode; "" if unset
	LocalTemplate       string // pxelinux template of installed nodes; "" means the built-in LOCALBOOT 0
	GrubInstallTemplate string // GRUB twin of InstallTemplate
	GrubLocalTemplate   string // GRUB twin of LocalTemplate; "" means the built-in exit
	IPXEInstallTemplate string // iPXE twin of InstallTemplate
	IPXELocalTemplate   string // iPXE twin of LocalTemplate; "" means the built-in exit
	CallbackListen      string // host:port of the installers' HTTP callback; "" when off
	CallbackURL         string // base URL nodes reach the callback by, no trailing slash
	InstallMaxBoots     int    // install configs served without started before a node is flagged

	// Cluster mode (package cluster): several servers share node
	// ownership in etcd.
	ClusterEndpoints []string // etcd client URLs; nil: not in a cluster
	ClusterCert      string   // TLS client certificate; "" for none
	ClusterKey       string
	ClusterCA        string
	ClusterPrefix    string // key prefix, with a trailing '/'
	ServerName       string // this server's name; defaults to the host name in cluster mode
	ServerAddress    string // IPv4 address nodes reach this server by; "" if unset

	// values holds each key's value as written (or its default), for
	// FixedChanged.
	values map[string]string
}

// Values of overlay_type (package overlay's) and export.
const (
	OverlayFS     = string(overlay.Overlayfs)
	AUFS          = string(overlay.AUFS)
	ExportFS      = "exportfs"
	ExportNone    = "none"
	ExportGanesha = "ganesha"
)

// FullMode reports whether nodes get overlay roots and NFS exports, rather
// than only rendered pxelinux configs.
func (c *Config) FullMode() bool {
	return c.NodeDir != ""
}

// Error is a problem in a file pxebootfs reads (the config file, the
// inventory), naming where it is: "FILE[:LINE]: [SECTION] KEY: REASON: ERR",
// each part only when known; a Key without a Section is one of [PXEBOOTFS].
type Error struct {
	File    string
	Line    int    // 0 when not about one line
	Section string // e.g. "PXEBOOTFS" or `node "n1"`; "" when not in one
	Key     string // "" when the problem is not about one key
	Reason  string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	switch {
	case e.Section != "":
		b.WriteString("[" + e.Section + "] ")
	case e.Key != "":
		// A key with no section named is one of pxebootfs.cfg's.
		b.WriteString("[" + Section + "] ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		if e.Reason != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: absOrSame(path), Reason: "cannot read config file", Err: err}
	}
	return Parse(path, data)
}

// Parse validates data as the contents of file. Relative paths in it are
// resolved against file's directory, and the files and directories named are
// checked on disk.
func Parse(file string, data []byte) (*Config, error) {
	file = absOrSame(file)
	p := &parser{file: file, dir: filepath.Dir(file), c: &Config{File: file, values: map[string]string{}}, set: map[string]bool{}, lines: map[string]int{}}
	vals, err := p.readINI(data)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		v, ok := vals[k.name]
		if ok && v != "" {
			p.set[k.name] = true
		} else {
			switch {
			case k.required:
				return nil, p.errf(k.name, "required key is missing (e.g. %s: %s)", k.name, k.example)
			case k.def == "":
				continue
			}
			v = k.def
		}
		p.c.values[k.name] = v
		if e := k.parse(p, v); e != nil {
			if e.Key == "" {
				e.Key = k.name
			}
			if !p.set[k.name] {
				e.Reason = "default " + k.def + ": " + e.Reason
			}
			return nil, p.place(e)
		}
	}
	for _, check := range crossChecks {
		if e := check(p); e != nil {
			return nil, p.place(e)
		}
	}
	return p.c, nil
}

// parser carries what the key parse functions need.
type parser struct {
	file string
	dir  string // paths are relative to this
	c    *Config
	set  map[string]bool // keys given a non-empty value in the file
	// lines: each key's line in the file, so that an error about a key
	// names it.
	lines map[string]int
}

func (p *parser) errf(key, format string, args ...any) *Error {
	return &Error{File: p.file, Line: p.lines[key], Section: Section, Key: key, Reason: fmt.Sprintf(format, args...)}
}

// place completes e, an error found by a key's parse or a cross-check, with
// the file and the line and section of its key.
func (p *parser) place(e *Error) *Error {
	e.File = p.file
	if e.Key != "" {
		e.Section = Section
		if e.Line == 0 {
			e.Line = p.lines[e.Key]
		}
	}
	return e
}

// path resolves a value against the config file's directory.
func (p *parser) path(v string) string {
	if !filepath.IsAbs(v) {
		v = filepath.Join(p.dir, v)
	}
	return filepath.Clean(v)
}

// readINI returns the values of [PXEBOOTFS] (and records each key's line),
// after rejecting everything a typo could hide behind: other sections, keys
// outside the section, unknown and duplicate keys.
func (p *parser) readINI(data []byte) (map[string]string, error) {
	f, err := inifile.Parse(data, maxConfigLine)
	if err != nil {
		e := &Error{File: p.file, Reason: "syntax error", Err: err}
		var se *inifile.SyntaxError
		if errors.As(err, &se) {
			e.Line, e.Err = se.Line, errors.New(se.Msg)
		}
		return nil, e
	}
	// Keys written before any header.
	if ks := f.Sections[0].Keys; len(ks) > 0 {
		return nil, &Error{File: p.file, Line: ks[0].LineOf(0), Reason: fmt.Sprintf("key %q is outside the [%s] section; put it after the [%s] header", ks[0].Name, Section, Section)}
	}
	var sec *inifile.Section
	for _, s := range f.Sections[1:] {
		switch {
		case s.Name == Section && sec == nil:
			sec = s
		case s.Name == Section:
			return nil, &Error{File: p.file, Line: s.Line, Reason: fmt.Sprintf("section [%s] appears more than once (first on line %d); merge them", Section, sec.Line)}
		default:
			reason := fmt.Sprintf("unexpected section [%s]: only [%s] is allowed", s.Name, Section)
			if strings.EqualFold(s.Name, Section) {
				reason += " (section names are case-sensitive)"
			}
			return nil, &Error{File: p.file, Line: s.Line, Reason: reason}
		}
	}
	if sec == nil {
		return nil, &Error{File: p.file, Reason: fmt.Sprintf("no [%s] section", Section)}
	}
	vals := map[string]string{}
	for _, k := range sec.Keys {
		p.lines[k.Name] = k.LineOf(0)
		if lookupKey(k.Name) == nil {
			reason := "unknown key"
			if s := suggest(k.Name); s != "" {
				reason += fmt.Sprintf("; did you mean %q?", s)
			}
			return nil, p.errf(k.Name, "%s", reason)
		}
		if len(k.Values) > 1 {
			e := p.errf(k.Name, "set %d times (first on line %d); set it once", len(k.Values), k.LineOf(0))
			e.Line = k.LineOf(1)
			return nil, e
		}
		vals[k.Name] = k.Values[0].V
	}
	return vals, nil
}

// maxConfigLine bounds one line of the config file.
const maxConfigLine = 1 << 20

// suggest returns the known key closest to name, if it is close enough to be
// a likely typo.
func suggest(name string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(name, k.name); d < bestD {
			best, bestD = k.name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func absOrSame(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// KeyDoc describes one config key, for help output and documentation.
type KeyDoc struct {
	Name     string
	Doc      string
	Default  string // "" when the key has no default
	Required bool
	FullMode bool // only meaningful in full mode
	Reload   bool // a reload of a running daemon may change it
}

// FixedChanged names, in table order, the keys whose values differ between
// old and new although a running daemon cannot change them (everything but
// the reloadable keys; see KeyDoc.Reload). nil means new may be applied by
// a reload. Values are compared as written (after defaults), so both must
// come from Load or Parse.
func FixedChanged(old, new *Config) []string {
	var changed []string
	for _, k := range keys {
		if !k.reload && old.values[k.name] != new.values[k.name] {
			changed = append(changed, k.name)
		}
	}
	return changed
}

// Keys lists every key the config file accepts, in documentation order.
func Keys() []KeyDoc {
	out := make([]KeyDoc, len(keys))
	for i, k := range keys {
		out[i] = KeyDoc{Name: k.name, Doc: k.doc, Default: k.def, Required: k.required, FullMode: k.full, Reload: k.reload}
	}
	return out
}
