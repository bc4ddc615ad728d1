// Package inventory reads the node inventory: an INI file that tells
// pxebootfs about individual nodes (their MACs, host name, own template,
// whether they get a root, free-form variables for the template), as an
// admin's database export would.
//
// # Format
//
//	# comments start with # or ;
//	[node "C0A80102"]            ; named by hex IP: ip may be left out
//	mac      = 52:54:00:12:34:56, 52:54:00:12:34:57
//	hostname = rack1-n02
//
//	[node "installer-7"]         ; any host-name-like label: ip is required
//	ip        = 192.168.1.7
//	mac       = 52:54:00:00:00:07
//	template  = templates/debian-installer.template
//	provision = false
//	var.suite = bookworm
//
// One section per node, [node "NAME"], where NAME is the node's IPv4 as 8
// hex digits or a label made of letters, digits, '-' and '.'. Keys:
//
//   - ip: the node's IPv4 address; must agree with a hex NAME.
//   - mac: one or more MACs (net.ParseMAC forms), separated by commas or
//     spaces; the key may also be repeated. They are served like ethers
//     entries: pxelinux's 01-<mac> names resolve to this node.
//   - hostname: RFC 1123 host name (labels of letters, digits and '-').
//   - root: the named root (package roots) the node's layer is made over
//     when made fresh, instead of the config's root.
//   - template: this node's own template instead of pxe_template (e.g. an
//     installer config), relative to the inventory file; parsed at load.
//   - provision: true (default) or false; false nodes get their config but
//     no root, mount or export (installers need none).
//   - install_template, local_template, grub_install_template,
//     grub_local_template: this node's own templates for install mode and
//     for once it is installed (see package install), relative like template.
//   - install: true puts the node in install mode the first time it is
//     seen; false (default) leaves it to `pxebootfs install`.
//   - var.NAME: free-form values, .Vars.NAME in templates; NAME is a Go
//     identifier (letters, digits, '_'), case-sensitive.
//
// The file is read by package inifile, in the config file's dialect: key
// names are case-insensitive (var.NAME's NAME keeps its case), and
// provision and install take the config file's booleans (config.ParseBool:
// true/false, yes/no, on/off, 1/0). Unknown keys
// and sections, keys set twice
// (except mac), and an IP or MAC given to two nodes are errors. Every error
// names the file and line.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pxebootfs/pxebootfs/config"
	"github.com/pxebootfs/pxebootfs/internal/inifile"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/pxename"
	"github.com/pxebootfs/pxebootfs/internal/render"
	"github.com/pxebootfs/pxebootfs/internal/roots"
)

// MaxFileSize bounds the inventory file read.
const MaxFileSize = 16 << 20

// Host is one [node "NAME"] section. Immutable after Parse.
type Host struct {
	Name         string             // NAME of the section, as written
	Line         int                // line of the section header
	ID           node.ID            // always valid
	MACs         []net.HardwareAddr // in the order given; may be empty
	Hostname     string             // "" when not given
	TemplateFile string             // template's absolute path; "" means pxe_template
	// own holds the node's own templates by loader and role (keys
	// template, grub_template, install_template, …: config's loader
	// table); absent for the config's.
	own map[Own]*render.Template
	// Install: put the node in install mode the first time it is seen
	// (a node that never was in install mode).
	Install   bool
	Provision bool              // false: config only, no root or export
	Root      string            // named root (package roots); "" is the config's root
	Vars      map[string]string // never nil
}

// Own names one of a node's own templates: a loader's template of a role.
type Own struct {
	Loader string
	Role   config.Role
}

// ownKeys maps each inventory template key to the template it sets.
var ownKeys = func() map[string]Own {
	m := map[string]Own{}
	for _, lk := range config.AllLoaderKeys() {
		for r, key := range lk.Inventory {
			m[key] = Own{Loader: lk.Loader, Role: config.Role(r)}
		}
	}
	return m
}()

// Template is the node's own template of loader for role r, nil when it
// has none (the config's serves).
func (n *Host) Template(loader string, r config.Role) *render.Template {
	return n.own[Own{loader, r}]
}

// MAC is the node's first MAC in colon form, "" without one.
func (n *Host) MAC() string {
	if len(n.MACs) == 0 {
		return ""
	}
	return pxename.ColonMAC(n.MACs[0])
}

// Inventory is a parsed inventory file. A nil *Inventory is empty. It is
// immutable, so safe for concurrent use.
type Inventory struct {
	file      string
	nodes     []*Host
	byID      map[node.ID]*Host
	byMAC     map[[6]byte]*Host
	templates []string
}

// Error is a problem in an inventory, naming its file, line, section
// ([node "NAME"]) and key: the same type as a config error, so both print
// and unwrap alike.
type Error = config.Error

// nodeSection is how an Error names node NAME's section.
func nodeSection(name string) string { return "node " + strconv.Quote(name) }

// Load reads and parses the inventory at path.
func Load(path string) (*Inventory, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("inventory: read %s: %w", abs, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: abs, Reason: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return Parse(abs, data)
}

var (
	sectionRE = regexp.MustCompile(`^node\s+"([^"]*)"$`)
	varRE     = regexp.MustCompile(`^var\.([A-Za-z_][A-Za-z0-9_]*)$`)
)

// Parse parses data as the inventory file at path (absolute). Templates are
// read relative to path's directory.
func Parse(path string, data []byte) (*Inventory, error) {
	p := &parser{
		file: path,
		inv: &Inventory{
			file:  path,
			byID:  map[node.ID]*Host{},
			byMAC: map[[6]byte]*Host{},
		},
		tmpls: map[string]*render.Template{},
	}
	f, err := inifile.Parse(data, MaxFileSize)
	if err != nil {
		e := &Error{File: path, Reason: "syntax error", Err: err}
		var se *inifile.SyntaxError
		if errors.As(err, &se) {
			e.Line, e.Err = se.Line, errors.New(se.Msg)
		}
		return nil, e
	}
	if ks := f.Sections[0].Keys; len(ks) > 0 {
		return nil, p.errf(ks[0].LineOf(0), "", "", "key %q is outside any [node \"NAME\"] section", ks[0].Name)
	}
	seen := map[string]int{} // NAME -> header line
	for _, s := range f.Sections[1:] {
		m := sectionRE.FindStringSubmatch(s.Name)
		if m == nil {
			return nil, p.errf(s.Line, "", "", "unexpected section [%s]; want [node \"NAME\"]", s.Name)
		}
		name := m[1]
		if first, dup := seen[name]; dup {
			return nil, p.errf(s.Line, name, "", "node appears twice (first on line %d); merge the sections", first)
		}
		seen[name] = s.Line
		n, err := p.node(s, name)
		if err != nil {
			return nil, err
		}
		if err := p.add(n, s); err != nil {
			return nil, err
		}
	}
	return p.inv, nil
}

type parser struct {
	file  string
	inv   *Inventory
	tmpls map[string]*render.Template // by absolute path
}

func (p *parser) errf(line int, node, key, format string, args ...any) *Error {
	e := &Error{File: p.file, Line: line, Key: key, Reason: fmt.Sprintf(format, args...)}
	if node != "" {
		e.Section = nodeSection(node)
	}
	return e
}

// nodeKey is one key of a [node "NAME"] section: how it sets the node.
type nodeKey struct {
	// repeat: the key may be given more than once (each value is applied).
	repeat bool
	// empty: an empty value is allowed.
	empty bool
	set   func(p *parser, n *Host, key, v string) error
}

// nodeKeys are the fixed keys; template keys come from config's loader
// table, var.NAME from varRE.
var nodeKeys = map[string]nodeKey{
	"ip":       {set: setIP},
	"mac":      {repeat: true, set: setMAC},
	"hostname": {set: setHostname},
	"root": {set: func(_ *parser, n *Host, _, v string) error {
		if err := roots.CheckName(v); err != nil {
			return err
		}
		n.Root = v
		return nil
	}},
	"provision": {set: func(_ *parser, n *Host, _, v string) error {
		return setBool(&n.Provision, v)
	}},
	"install": {set: func(_ *parser, n *Host, _, v string) error {
		return setBool(&n.Install, v)
	}},
}

// keyOf returns the spec of key, or an error naming what is wrong with it.
func keyOf(key string) (nodeKey, error) {
	if k, ok := nodeKeys[key]; ok {
		return k, nil
	}
	if _, ok := ownKeys[key]; ok {
		return nodeKey{set: setTemplate}, nil
	}
	if varRE.MatchString(key) {
		return nodeKey{empty: true, set: func(_ *parser, n *Host, key, v string) error {
			n.Vars[varRE.FindStringSubmatch(key)[1]] = v
			return nil
		}}, nil
	}
	if strings.HasPrefix(key, "var.") {
		return nodeKey{}, errors.New("variable name must be letters, digits and '_', not starting with a digit (it is used as .Vars.NAME)")
	}
	names := []string{"ip", "mac", "hostname", "root"}
	for _, lk := range config.AllLoaderKeys() {
		for _, k := range lk.Inventory {
			if k != "" {
				names = append(names, k)
			}
		}
	}
	return nodeKey{}, fmt.Errorf("unknown key; keys are %s, install, provision and var.NAME", strings.Join(names, ", "))
}

func setIP(_ *parser, n *Host, _, v string) error {
	a, err := netip.ParseAddr(v)
	id, ierr := node.FromAddr(a)
	if err != nil || ierr != nil {
		return fmt.Errorf("%q is not an IPv4 address", v)
	}
	n.ID = id
	return nil
}

func setMAC(_ *parser, n *Host, _, v string) error {
	macs, err := parseMACs(v)
	if err != nil {
		return err
	}
	for _, m := range macs {
		if !containsMAC(n.MACs, m) {
			n.MACs = append(n.MACs, m)
		}
	}
	return nil
}

func setHostname(_ *parser, n *Host, _, v string) error {
	if err := checkHostname(v); err != nil {
		return fmt.Errorf("%q: %v", v, err)
	}
	n.Hostname = v
	return nil
}

// setBool takes the config's boolean rule: provision = yes works as
// reset_on_boot = yes does.
func setBool(dst *bool, v string) error {
	b, ok := config.ParseBool(v)
	if !ok {
		return fmt.Errorf("%q is not a boolean (true/false, yes/no, on/off, 1/0)", v)
	}
	*dst = b
	return nil
}

// setTemplate loads one of the node's own templates. A per-node template
// must render for this very node, so a missing var is a load error here
// rather than a failed boot later (checked in node, once ip is known).
func setTemplate(p *parser, n *Host, key, v string) error {
	t, abs, err := p.template(v)
	if err != nil {
		return err
	}
	if n.own == nil {
		n.own = map[Own]*render.Template{}
	}
	n.own[ownKeys[key]] = t
	if key == "template" {
		n.TemplateFile = abs
	}
	return nil
}

// node builds the node of section s, whose header names it name.
func (p *parser) node(s *inifile.Section, name string) (*Host, error) {
	n := &Host{Name: name, Line: s.Line, Provision: true, Vars: map[string]string{}}
	var named node.ID
	if id, err := node.ParseHex(name); err == nil {
		named = id
	} else if err := checkHostname(name); err != nil {
		return nil, p.errf(s.Line, name, "", "node name must be 8 hex digits (its IPv4) or a host-name-like label: %v", err)
	}
	for _, k := range s.Keys {
		spec, err := keyOf(k.Name)
		if err != nil {
			return nil, p.errf(k.LineOf(0), name, k.Name, "%v", err)
		}
		if len(k.Values) > 1 && !spec.repeat {
			return nil, p.errf(k.LineOf(1), name, k.Name, "set %d times; set it once", len(k.Values))
		}
		for i, v := range k.Values {
			if v.V == "" && !spec.empty {
				return nil, p.errf(v.Line, name, k.Name, "empty value")
			}
			if err := spec.set(p, n, k.Name, v.V); err != nil {
				return nil, &Error{File: p.file, Line: k.LineOf(i), Section: nodeSection(name), Key: k.Name, Err: err}
			}
		}
	}
	switch {
	case !n.ID.IsValid() && !named.IsValid():
		return nil, p.errf(s.Line, name, "", "no ip; give ip = A.B.C.D or name the node by its hex IP")
	case !n.ID.IsValid():
		n.ID = named
	case named.IsValid() && named != n.ID:
		return nil, p.errf(s.KeyLine("ip", 0), name, "ip", "%s does not match the node name %s (which is %s)", n.ID.Addr(), name, named.Addr())
	}
	for _, lk := range config.AllLoaderKeys() {
		for r, key := range lk.Inventory {
			t := n.Template(lk.Loader, config.Role(r))
			if t == nil {
				continue
			}
			if _, err := t.Render(n.TrialData()); err != nil {
				return nil, &Error{File: p.file, Line: s.KeyLine(key, 0), Section: nodeSection(name), Key: key, Err: err}
			}
		}
	}
	return n, nil
}

// TrialData is the template data of the node before provisioning (FSID 0,
// no NodeDir), named by its hex IP.
func (n *Host) TrialData() render.Data {
	return render.Data{
		Node: n.ID.String(), IP: n.ID.Addr().String(), MAC: n.MAC(), Name: n.ID.String(),
		Hostname: n.Hostname, Vars: n.Vars,
	}
}

// template loads a per-node template once per file.
func (p *parser) template(v string) (*render.Template, string, error) {
	abs := v
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(filepath.Dir(p.file), v)
	}
	abs = filepath.Clean(abs)
	if t, ok := p.tmpls[abs]; ok {
		return t, abs, nil
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, "", fmt.Errorf("template: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, "", fmt.Errorf("template %s is not a regular file", abs)
	}
	t, err := render.Load(abs)
	if err != nil {
		return nil, "", err
	}
	p.tmpls[abs] = t
	p.inv.templates = append(p.inv.templates, abs)
	return t, abs, nil
}

// add indexes n, refusing an IP or MAC another node already has.
func (p *parser) add(n *Host, s *inifile.Section) error {
	if o, dup := p.inv.byID[n.ID]; dup {
		line := s.KeyLine("ip", 0)
		return p.errf(line, n.Name, "ip", "%s is also node %q's (line %d)", n.ID.Addr(), o.Name, o.Line)
	}
	for i, m := range n.MACs {
		if o, dup := p.inv.byMAC[[6]byte(m)]; dup {
			return p.errf(macLine(s, m), n.Name, "mac", "%s is also node %q's (line %d)", m, o.Name, o.Line)
		}
		p.inv.byMAC[[6]byte(n.MACs[i])] = n
	}
	p.inv.byID[n.ID] = n
	p.inv.nodes = append(p.inv.nodes, n)
	return nil
}

// macLine is the line of the mac value of s that lists m.
func macLine(s *inifile.Section, m net.HardwareAddr) int {
	if k := s.Key("mac"); k != nil {
		for _, v := range k.Values {
			if ms, err := parseMACs(v.V); err == nil && containsMAC(ms, m) {
				return v.Line
			}
		}
	}
	return s.KeyLine("mac", 0)
}

// parseMACs splits a mac value at commas and white space.
func parseMACs(v string) ([]net.HardwareAddr, error) {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("no MAC in %q", v)
	}
	var out []net.HardwareAddr
	for _, f := range fields {
		m, err := net.ParseMAC(f)
		if err != nil || len(m) != 6 {
			return nil, fmt.Errorf("%q is not an Ethernet MAC such as 52:54:00:12:34:56", f)
		}
		out = append(out, m)
	}
	return out, nil
}

func containsMAC(ms []net.HardwareAddr, m net.HardwareAddr) bool {
	for _, x := range ms {
		if bytes.Equal(x, m) {
			return true
		}
	}
	return false
}

// checkHostname applies RFC 1123: dot-separated labels of 1 to 63 letters,
// digits and '-', not starting or ending with '-'; 253 bytes at most.
func checkHostname(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("a host name has 1 to 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %q must have 1 to 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("label %q has %q; only letters, digits and '-' are allowed", label, c)
			}
		}
	}
	return nil
}

// File is the inventory's absolute path ("" for a nil Inventory).
func (inv *Inventory) File() string {
	if inv == nil {
		return ""
	}
	return inv.file
}

// Files are the inventory and every per-node template it loaded: what to
// watch for changes.
func (inv *Inventory) Files() []string {
	if inv == nil {
		return nil
	}
	return append([]string{inv.file}, inv.templates...)
}

// Nodes lists the nodes in file order.
func (inv *Inventory) Nodes() []*Host {
	if inv == nil {
		return nil
	}
	return append([]*Host(nil), inv.nodes...)
}

// Len is the number of nodes.
func (inv *Inventory) Len() int {
	if inv == nil {
		return 0
	}
	return len(inv.nodes)
}

// ByID returns the node id's section, or nil.
func (inv *Inventory) ByID(id node.ID) *Host {
	if inv == nil {
		return nil
	}
	return inv.byID[id]
}

// ByMAC returns the node that lists hw, or nil.
func (inv *Inventory) ByMAC(hw net.HardwareAddr) *Host {
	if inv == nil || len(hw) != 6 {
		return nil
	}
	return inv.byMAC[[6]byte(hw)]
}
