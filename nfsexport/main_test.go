package nfsexport

import (
	"os"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// TestMain gives the tests a private /var/lib/nfs and /etc/exports{,.d}, so
// that running exportfs never changes the machine's real exports.
func TestMain(m *testing.M) { os.Exit(testenv.IsolateNFSState(m)) }
