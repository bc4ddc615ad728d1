package nfsexport

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKernelServerParts(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "with"), "proc /proc proc rw 0 0\nnfsd /proc/fs/nfsd nfsd rw,relatime 0 0\n")
	write(filepath.Join(dir, "without"), "proc /proc proc rw 0 0\nsunrpc /run/rpc_pipefs rpc_pipefs rw 0 0\n")
	tests := []struct {
		mounts string
		want   bool
	}{{"with", true}, {"without", false}, {"missing", false}}
	for _, tt := range tests {
		if got := nfsdMounted(filepath.Join(dir, tt.mounts)); got != tt.want {
			t.Errorf("nfsdMounted(%s) = %v, want %v", tt.mounts, got, tt.want)
		}
	}
	proc := filepath.Join(dir, "proc")
	write(filepath.Join(proc, "1", "comm"), "systemd\n")
	write(filepath.Join(proc, "42", "comm"), "rpc.mountd\n")
	write(filepath.Join(proc, "self", "comm"), "rpc.mountd\n") // not a pid
	if !processRunning(proc, "rpc.mountd") || processRunning(proc, "rpc.statd") {
		t.Errorf("processRunning: mountd %v, statd %v; want true, false", processRunning(proc, "rpc.mountd"), processRunning(proc, "rpc.statd"))
	}
}
