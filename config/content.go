package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/generator"
)

// Defaults of the content generator keys: package generator's.
const (
	DefaultGeneratorTimeout     = generator.DefaultTimeout
	DefaultGeneratorTTL         = generator.DefaultTTL
	DefaultGeneratorConcurrency = generator.DefaultConcurrency
)

// maxDurationSeconds keeps a number of seconds inside time.Duration.
const maxDurationSeconds = 1e6

// maxGeneratorConcurrency keeps a typo (80000) from allowing a fork storm.
const maxGeneratorConcurrency = 1024

// parseDuration reads a Go duration ("5s", "500ms", "1m") or a plain number
// of seconds ("5", "0.5"); it must be positive.
func parseDuration(v string) (time.Duration, *Error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, ferr := strconv.ParseFloat(v, 64)
		// ParseFloat also takes "inf", "NaN" and hex floats: not durations.
		if ferr != nil || strings.ContainsAny(v, "xXpP_nNiI") || secs > maxDurationSeconds {
			return 0, &Error{Reason: fmt.Sprintf("%q is not a duration such as 5s, 500ms or 2 (seconds)", v)}
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, &Error{Reason: fmt.Sprintf("%q is not a positive duration", v)}
	}
	return d, nil
}

// executableFile checks that path is a regular file this process may
// execute. Stat first, so a directory or FIFO gets a clear reason.
func executableFile(path string) *Error {
	fi, err := os.Stat(path)
	if err != nil {
		return &Error{Reason: "not an executable file", Err: err}
	}
	if !fi.Mode().IsRegular() {
		return &Error{Reason: fmt.Sprintf("%s is not a regular file (%s)", path, kind(fi.Mode()))}
	}
	// access(2) alone would let root pass a file with no x bit at all.
	if fi.Mode().Perm()&0o111 == 0 {
		return &Error{Reason: fmt.Sprintf("%s is not executable (mode %v); chmod +x it", path, fi.Mode().Perm())}
	}
	if err := syscall.Access(path, 1 /* X_OK */); err != nil {
		return &Error{Reason: "not an executable file", Err: fmt.Errorf("%s: %w", path, err)}
	}
	return nil
}
