package image

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInterruptedImportLeavesNoUnindexedVersion: a kill -9 of `image
// import` between its rename of the version into place and its index
// write (the index is replaced atomically, so the old one stays) leaves a
// complete version no index names. The next import, or the next daemon
// start (CleanStaging), adopts it, logged, so that list shows it and prune
// can remove it; a version directory whose files do not hash to its name
// is removed.
func TestInterruptedImportLeavesNoUnindexedVersion(t *testing.T) {
	for _, next := range []string{"import", "start"} {
		t.Run("next "+next, func(t *testing.T) {
			s, _ := newStore(t)
			src := t.TempDir()
			imp := func(content string) Result {
				t.Helper()
				p := writeFile(t, src, "vmlinuz", content)
				r, err := s.Import(context.Background(), ImportOptions{Name: "img", Sources: []Source{{"vmlinuz", p}}})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			first := imp("kernel 1")
			// The kill: version two in place, the index as before it.
			before, err := os.ReadFile(s.IndexPath())
			if err != nil {
				t.Fatal(err)
			}
			lost := imp("kernel 2")
			if err := os.WriteFile(s.IndexPath(), before, 0o600); err != nil {
				t.Fatal(err)
			}
			// And a version directory no import made whole.
			bogus := filepath.Join(s.Dir(), "img", "0badc0de")
			if err := os.MkdirAll(bogus, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, bogus, "vmlinuz", "half a kernel")

			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			switch next {
			case "import":
				p := writeFile(t, src, "initrd", "other image")
				if _, err := s.Import(context.Background(), ImportOptions{Name: "other", Sources: []Source{{"initrd", p}}, Log: log}); err != nil {
					t.Fatal(err)
				}
			case "start":
				if err := s.CleanStaging(log); err != nil {
					t.Fatal(err)
				}
			}
			ix, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			im := ix.Images["img"]
			v := im.Versions[lost.Version]
			if v == nil || im.Current != first.Version || v.Replaced.IsZero() || v.Files["vmlinuz"].SHA256 != sum("kernel 2") {
				t.Fatalf("after the next %s: img current %s, versions %v; want %s adopted, not current", next, im.Current, im.Versions, lost.Version)
			}
			if _, err := os.Stat(bogus); !os.IsNotExist(err) {
				t.Errorf("a version whose files do not match its name is still there: %v", err)
			}
			if !strings.Contains(logged.String(), "adopted") || !strings.Contains(logged.String(), "removed") {
				t.Errorf("log says:\n%s", logged.String())
			}
			// Adopted, it is removed like any version once out of its
			// grace (which runs from its adoption), and not before.
			if _, err := s.Remove("img", lost.Version, time.Hour, false, time.Now()); err == nil {
				t.Errorf("an adopted version was removed within its grace")
			}
			if removed, err := s.Remove("img", lost.Version, time.Hour, false, time.Now().Add(2*time.Hour)); err != nil || len(removed) != 1 {
				t.Errorf("remove after grace: %v, %v", removed, err)
			}
		})
	}
}
