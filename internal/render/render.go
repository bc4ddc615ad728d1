// Package render turns the admin's pxelinux config template into the config
// for one node. Rendering goes into a private buffer and only a complete
// result is returned, so a template error never serves half a file.
//
// # Template syntax
//
// The file is a Go text/template. In addition, the literal <NODE> (the
// placeholder of the tool pxebootfs replaces) stands for the node's address
// as 8 upper-case hex digits. It is rewritten to {{.Node}} in the source
// before parsing, which keeps line numbers (columns in error messages
// count the rewritten text), and which means a <NODE> inside a value (say in
// .Vars) is printed as is, never expanded again. The rewrite is textual: a
// <NODE> inside an action's string literal becomes the text "{{.Node}}".
//
// # Checks at parse time
//
// Parse rejects, naming file and line, a template that
//   - does not parse;
//   - never refers to the node (<NODE>, .Node, .IP, .NodeDir or .Name), since
//     every node would then get the same config;
//   - names a field Data does not have where dot is known to be Data
//     (outside with/range bodies and defined templates), found by walking
//     the parse tree so untaken branches are checked too;
//   - ranges over a number ({{range 5}}, {{range len .X}}), which could
//     spin for ever without writing;
//   - fails to render SampleData.
//
// # Every render ends
//
// text/template has no step limit, and a range that writes nothing (a
// count held in a variable, nested ranges) is not stopped by the output
// cap. So every range body and every template body starts with a step,
// a call of a function Parse inserts into the parse tree, and a render
// that takes more than MaxSteps steps fails with ErrTooManySteps, naming
// the template and the line of the range. Recursion through {{template}}
// is bounded by text/template's own depth limit and by the steps of the
// bodies it enters.
//
// Keys of .Vars cannot be known at parse time (they come from an inventory,
// per node), so the trial render runs on a clone with missingkey=zero: every
// .Vars.key reads as "". Render itself uses missingkey=error, so a node
// lacking a key the template uses gets an error, not a config with a hole.
package render

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
)

// Data is what a template sees as dot.
type Data struct {
	Node     string            // IPv4 as 8 upper-case hex digits, "C0A80102"
	IP       string            // dotted IPv4, "192.168.1.2"
	MAC      string            // "aa:bb:cc:dd:ee:ff", or "" when unknown
	Name     string            // the requested file name, e.g. "01-aa-bb-cc-dd-ee-ff" or "C0A80102"
	FSID     uint32            // full mode: the node's NFS fsid; 0 in config-only mode
	NodeDir  string            // full mode: the node's exported root, e.g. /netboot/node/C0A80102; "" in config-only mode
	Hostname string            // from an inventory; "" without one
	Vars     map[string]string // free-form inventory vars; a missing key is a render error

	// Full mode: the root generation the node's layer is made over
	// (package roots): "root_dir" and "dir" for the config's root_dir.
	Root    string
	RootGen string
	// Kernel and Initrd are the boot image files of that generation
	// (boot/vmlinuz-*, boot/initrd.img-* made a boot image at import),
	// relative to tftp_root; "" when it has none. A node pinned to an old
	// generation is served that generation's kernel, matching its modules.
	Kernel string
	Initrd string

	// Server is the address of the server holding the node's root, for
	// nfsroot={{.Server}}:{{.NodeDir}}: server_address, and in cluster
	// mode the address of the server that owns the node ("" if unset).
	Server string

	// HTTPBase is http_base: where a web server serves tftp_root, with a
	// trailing '/' ("" when unset). {{imageURL "NAME" "FILE"}} is it plus
	// {{image "NAME" "FILE"}}; .HTTPBase .Kernel is the node's kernel URL.
	HTTPBase string

	// Install mode (package install): the node's state ("", "install",
	// "installing", "installed"), its secret token (empty unless in install
	// mode or installed) and its callback base URL, callback_url +
	// "/v1/install/NODE" ("" when callback_url is unset).
	InstallState string
	InstallToken string
	CallbackURL  string

	// images resolves {{image "NAME" "FILE"}} for this render; see
	// SetImages.
	images ImageFunc
}

// ImageFunc gives the path, relative to the TFTP root, of FILE of image
// NAME's version for one render. The caller binds it to one snapshot of the
// image index, so every call of one render names one version per image.
type ImageFunc func(name, file string) (string, error)

// SetImages sets what {{image}} calls resolve with in renders of d.
func (d *Data) SetImages(f ImageFunc) { d.images = f }

// noImages is {{image}} when no images are configured.
func noImages(name, file string) (string, error) {
	return "", fmt.Errorf("image %q: no boot images (tftp_root is not set)", name)
}

// SampleImage stands in for {{image}} where no index is at hand: the trial
// render of Parse, and check's sample render (which checks the names
// against the index apart).
func SampleImage(name, file string) (string, error) {
	return "images/" + name + "/00000000/" + file, nil
}

// SampleData is the node Parse renders for as a trial. Every string field
// is non-empty so that {{if .X}} branches are exercised; Vars is nil (see
// the package doc).
func SampleData() Data {
	return Data{
		Node:     "C0A80102",
		IP:       "192.168.1.2",
		MAC:      "52:54:00:12:34:56",
		Name:     "01-52-54-00-12-34-56",
		FSID:     1001,
		NodeDir:  "/netboot/node/C0A80102",
		Hostname: "node2",
		Root:     "debian",
		RootGen:  "0123456789ab",
		Kernel:   "images/debian/00000000/vmlinuz",
		HTTPBase: "http://192.0.2.1/tftp/",
		Server:   "192.0.2.1",
		Initrd:   "images/debian/00000000/initrd.img",

		InstallState: "install",
		InstallToken: "00112233445566778899aabbccddeeff",
		CallbackURL:  "http://192.0.2.1:8770/v1/install/C0A80102",
	}
}

// MaxSize bounds a rendered config (pxelinux configs are a few KiB): a
// runaway range cannot fill memory, only fail the render with ErrTooLarge.
const MaxSize = 1 << 20

// MaxSourceSize bounds the template file Load reads.
const MaxSourceSize = 1 << 20

// ErrTooLarge is wrapped by Render when the output would exceed MaxSize.
var ErrTooLarge = fmt.Errorf("rendered config larger than %d bytes", MaxSize)

// MaxSteps bounds the range iterations and template bodies one render may
// enter: 262,144, about a tenth of a second of a render that writes
// nothing (measured: 0.45 s per million steps here). A pxelinux config
// ranges over a node's vars or a short list: a few hundred steps.
const MaxSteps = 1 << 18

// maxSteps is MaxSteps; the fuzz test lowers it so that the many looping
// templates it finds cost it little time.
var maxSteps = MaxSteps

// ErrTooManySteps is wrapped by Render when a render would take more than
// MaxSteps steps.
var ErrTooManySteps = fmt.Errorf("render took more than %d steps (a range that does not end?)", MaxSteps)

// stepFunc is the function Parse calls at the start of every range and
// template body; no template can name it (it is not in the package doc,
// and Parse refuses a source that does).
const stepFunc = "pxebootfs_step"

// Placeholder is the literal the original tool replaced with the node's hex
// address.
const Placeholder = "<NODE>"

// Template is a parsed, checked pxelinux config template. It is immutable
// and safe for concurrent Render calls.
type Template struct {
	name   string
	src    string
	tmpl   *template.Template
	images imageUse
}

// Fields of Data, in declaration order, for the unknown-field check.
var dataFields = func() []string {
	typ := reflect.TypeFor[Data]()
	var names []string
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() {
			names = append(names, f.Name)
		}
	}
	return names
}()

// Fields that tell nodes apart; a template must use one of them. NodeDir
// does so only in full mode (it is "" in config-only mode) but counts, since
// a full-mode template may rightly use nothing else.
var nodeFields = []string{"Node", "IP", "NodeDir", "Name"}

// Load reads and parses the template at path; errors name the path.
func Load(path string) (*Template, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load template: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
	if err != nil {
		return nil, fmt.Errorf("load template: read %s: %w", path, err)
	}
	if len(src) > MaxSourceSize {
		return nil, fmt.Errorf("load template: %s: larger than %d bytes", path, MaxSourceSize)
	}
	return Parse(path, src)
}

// Parse parses src as the template called name (a path, for Load) and runs
// the checks in the package doc. Errors read "NAME:LINE: ...".
func Parse(name string, src []byte) (*Template, error) {
	if bytes.Contains(src, []byte(stepFunc)) {
		return nil, fmt.Errorf("parse pxelinux template: %s: %s is reserved", name, stepFunc)
	}
	tmpl, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{"image": noImages, "imageURL": noImages, stepFunc: noStep}).Parse(rewrite(string(src)))
	if err != nil {
		// text/template's message is "template: NAME:LINE: ...".
		return nil, fmt.Errorf("parse pxelinux template: %w", err)
	}
	images, err := checkTrees(tmpl)
	if err != nil {
		return nil, fmt.Errorf("parse pxelinux template: %w", err)
	}
	addSteps(tmpl)
	t := &Template{name: name, src: string(src), tmpl: tmpl, images: images}
	if err := t.trial(SampleImage); err != nil {
		return nil, fmt.Errorf("parse pxelinux template: trial render for node %s: %w", SampleData().Node, err)
	}
	return t, nil
}

// Trial renders the template for SampleData with {{image}} resolved by
// images (nil: no images configured), as every render of it will resolve
// them: a template naming an image or file that is not there fails here,
// when it is loaded, rather than at every node's fetch. Missing .Vars keys
// read as "" (a node's vars are not known here).
func (t *Template) Trial(images ImageFunc) error {
	if err := t.trial(images); err != nil {
		return fmt.Errorf("trial render of %s: %w", t.name, err)
	}
	return nil
}

// trial renders SampleData with images, missing .Vars keys reading as "".
func (t *Template) trial(images ImageFunc) error {
	d := SampleData()
	d.SetImages(images)
	_, err := t.render(d, "missingkey=zero")
	return err
}

// noStep is stepFunc in the template as parsed; every render binds its
// own counter (Render).
func noStep() (string, error) { return "", nil }

// addSteps puts a call of stepFunc at the start of every template body and
// every range body of tmpl's set, positioned at the range (or the
// template's start) so that an error names its line.
func addSteps(tmpl *template.Template) {
	for _, tt := range tmpl.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		prependStep(tt.Tree.Root, tt.Tree.Root.Pos, 1)
		var walk func(n parse.Node)
		walk = func(n parse.Node) {
			switch n := n.(type) {
			case *parse.ListNode:
				if n == nil {
					return
				}
				for _, m := range n.Nodes {
					walk(m)
				}
			case *parse.IfNode:
				walk(n.List)
				walk(n.ElseList)
			case *parse.WithNode:
				walk(n.List)
				walk(n.ElseList)
			case *parse.RangeNode:
				walk(n.List)
				walk(n.ElseList)
				if n.List != nil {
					prependStep(n.List, n.Pos, n.Line)
				}
			}
		}
		walk(tt.Tree.Root)
	}
}

// prependStep puts {{pxebootfs_step}} first in list.
func prependStep(list *parse.ListNode, pos parse.Pos, line int) {
	id := parse.NewIdentifier(stepFunc).SetPos(pos)
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{id}}
	pipe := &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Line: line, Cmds: []*parse.CommandNode{cmd}}
	act := &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos, Line: line, Pipe: pipe}
	list.Nodes = append([]parse.Node{act}, list.Nodes...)
}

// Images lists the images a template names by constant arguments, as
// {{image "NAME" "FILE"}} pairs; check verifies they exist. UsesImages is
// true for any {{image}} call, constant or not.
func (t *Template) Images() []ImageRef { return t.images.refs }

// UsesImages reports whether the template calls image.
func (t *Template) UsesImages() bool { return t.images.used }

// ImageRef is one {{image "NAME" "FILE"}} with constant arguments.
type ImageRef struct{ Name, File string }

type imageUse struct {
	used bool
	refs []ImageRef
}

// rewrite turns each <NODE> into {{.Node}}, adding no newline so line
// numbers stay those of the file. A '{' right before <NODE> would make
// "{{{.Node}}", which the lexer reads as an action starting with '{'; that
// brace is emitted through an action of its own instead.
func rewrite(src string) string {
	var b strings.Builder
	b.Grow(len(src) + 8*strings.Count(src, Placeholder))
	for {
		i := strings.Index(src, Placeholder)
		if i < 0 {
			b.WriteString(src)
			return b.String()
		}
		if i > 0 && src[i-1] == '{' {
			b.WriteString(src[:i-1])
			b.WriteString(`{{"{"}}`)
		} else {
			b.WriteString(src[:i])
		}
		b.WriteString("{{.Node}}")
		src = src[i+len(Placeholder):]
	}
}

// Name is the name the template was parsed under (its path, for Load).
func (t *Template) Name() string { return t.name }

// Source is the template text as given, before <NODE> is rewritten.
func (t *Template) Source() string { return t.src }

var bufPool = sync.Pool{New: func() any { return new(limitedBuffer) }}

// Buffers that grew beyond this go back to the GC, not the pool, so one
// odd config does not pin memory.
const maxPooled = 64 << 10

// Render renders the config for d. On any error it returns nil bytes: the
// caller never sees a partial config. The result is the caller's to keep.
// Every render ends: see MaxSteps.
func (t *Template) Render(d Data) ([]byte, error) {
	b, err := t.render(d, "missingkey=error")
	if err != nil {
		return nil, fmt.Errorf("render %s for node %s: %w", t.name, d.Node, err)
	}
	return b, nil
}

// render executes the template for d with the missingkey option given,
// on a copy bound to this render's step counter and {{image}} resolver:
// the parsed template is shared by concurrent renders.
func (t *Template) render(d Data, missingkey string) ([]byte, error) {
	b := bufPool.Get().(*limitedBuffer)
	b.buf.Reset()
	defer func() {
		if b.buf.Cap() <= maxPooled {
			bufPool.Put(b)
		}
	}()
	tmpl, err := t.tmpl.Clone()
	if err != nil {
		return nil, err
	}
	images := d.images
	if images == nil {
		images = noImages
	}
	steps := 0
	imageURL := func(name, file string) (string, error) {
		if d.HTTPBase == "" {
			return "", fmt.Errorf("imageURL %q %q: http_base is not set", name, file)
		}
		p, err := images(name, file)
		return d.HTTPBase + p, err
	}
	tmpl.Option(missingkey).Funcs(template.FuncMap{"image": images, "imageURL": imageURL, stepFunc: func() (string, error) {
		if steps++; steps > maxSteps {
			return "", ErrTooManySteps
		}
		return "", nil
	}})
	if err := tmpl.Execute(b, &d); err != nil {
		return nil, err
	}
	// Copy out exactly: the buffer goes back to the pool, and the length
	// becomes the file size the tftpd announces.
	return append(make([]byte, 0, b.buf.Len()), b.buf.Bytes()...), nil
}

// limitedBuffer fails writes past MaxSize; text/template stops executing at
// the first write error and returns that error unwrapped.
type limitedBuffer struct{ buf bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > MaxSize {
		return 0, ErrTooLarge
	}
	return b.buf.Write(p)
}

// checkTrees walks every template of the set (the main one and any
// {{define}}d or {{block}}ed ones).
func checkTrees(tmpl *template.Template) (imageUse, error) {
	usesNode := false
	var images imageUse
	for _, tt := range tmpl.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		c := &checker{tree: tt.Tree, main: tt.Name() == tmpl.Name()}
		c.walk(tt.Tree.Root, c.main)
		if c.err != nil {
			return imageUse{}, c.err
		}
		usesNode = usesNode || c.usesNode
		images.used = images.used || c.images.used
		images.refs = append(images.refs, c.images.refs...)
	}
	if !usesNode {
		return imageUse{}, fmt.Errorf("%s:1: template never uses %s, .Node, .IP, .NodeDir or .Name; every node would get the same config",
			tmpl.Name(), Placeholder)
	}
	return images, nil
}

type checker struct {
	tree     *parse.Tree
	main     bool // in the main template, $ is always Data
	usesNode bool
	images   imageUse
	err      error
}

// walk visits n; dotIsData tells whether dot is known to be Data there.
func (c *checker) walk(n parse.Node, dotIsData bool) {
	if c.err != nil || n == nil {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, m := range n.Nodes {
			c.walk(m, dotIsData)
		}
	case *parse.ActionNode:
		c.walk(n.Pipe, dotIsData)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, cmd := range n.Cmds {
			c.walk(cmd, dotIsData)
		}
	case *parse.CommandNode:
		c.imageCall(n)
		for _, arg := range n.Args {
			c.walk(arg, dotIsData)
		}
	case *parse.IdentifierNode:
		if n.Ident == "image" || n.Ident == "imageURL" {
			c.images.used = true
		}
	case *parse.IfNode:
		c.branch(&n.BranchNode, dotIsData, dotIsData)
	case *parse.WithNode:
		c.branch(&n.BranchNode, dotIsData, false)
	case *parse.RangeNode:
		c.rangeOverNumber(n)
		c.branch(&n.BranchNode, dotIsData, false)
	case *parse.TemplateNode:
		c.walk(n.Pipe, dotIsData)
	case *parse.ChainNode:
		c.walk(n.Node, dotIsData)
		if len(n.Field) > 0 && isNodeField(n.Field[0]) {
			c.usesNode = true
		}
	case *parse.FieldNode:
		c.field(n, n.Ident[0], dotIsData)
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			c.field(n, n.Ident[1], c.main && n.Ident[0] == "$")
		}
	}
}

// branch walks an if/with/range: the pipeline and else-branch see the
// outer dot, the body sees bodyDot.
func (c *checker) branch(b *parse.BranchNode, dotIsData, bodyDot bool) {
	c.walk(b.Pipe, dotIsData)
	c.walk(b.List, bodyDot)
	c.walk(b.ElseList, dotIsData)
}

func (c *checker) field(n parse.Node, ident string, onData bool) {
	if isNodeField(ident) {
		c.usesNode = true
	}
	if onData && !slices.Contains(dataFields, ident) {
		loc, context := c.tree.ErrorContext(n)
		c.err = fmt.Errorf("%s: unknown field .%s in {{%s}}; fields are .%s",
			loc, ident, context, strings.Join(dataFields, ", ."))
	}
}

// rangeOverNumber refuses {{range N}} and {{range len X}}: text/template
// has no step limit, and a range over a large number spins without
// writing (so the output cap does not stop it), hanging every open of the
// name. pxelinux templates range over .Vars or lists; a count held in a
// variable is not caught here.
func (c *checker) rangeOverNumber(n *parse.RangeNode) {
	if n.Pipe == nil || len(n.Pipe.Cmds) == 0 {
		return
	}
	cmd := n.Pipe.Cmds[len(n.Pipe.Cmds)-1]
	if len(cmd.Args) == 0 {
		return
	}
	number := false
	switch a := cmd.Args[0].(type) {
	case *parse.NumberNode:
		number = true
	case *parse.IdentifierNode:
		number = a.Ident == "len"
	}
	if number {
		loc, context := c.tree.ErrorContext(n)
		c.err = fmt.Errorf("%s: %s ranges over a number; templates may range over .Vars or a list only (a render must end, and text/template has no step limit)", loc, context)
	}
}

// imageCall records {{image "NAME" "FILE"}} with constant arguments.
func (c *checker) imageCall(n *parse.CommandNode) {
	if len(n.Args) != 3 {
		return
	}
	id, ok := n.Args[0].(*parse.IdentifierNode)
	if !ok || id.Ident != "image" && id.Ident != "imageURL" {
		return
	}
	name, ok1 := n.Args[1].(*parse.StringNode)
	file, ok2 := n.Args[2].(*parse.StringNode)
	if ok1 && ok2 {
		c.images.refs = append(c.images.refs, ImageRef{name.Text, file.Text})
	}
}

func isNodeField(ident string) bool { return slices.Contains(nodeFields, ident) }
