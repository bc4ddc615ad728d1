// Package generator runs an admin's content-generator program, the
// interface of atftpd's --content-generator patch, and caches what it
// produced so a tftpd's lookup, open and fstat of one name see one result.
//
// # The program interface
//
// The program is executed directly (never through a shell) as
//
//	PROGRAM --file FULLPATH [--ip IP] [--mac MAC] [--node NODE]
//
// and must ignore arguments it does not know. File descriptor 3 is open for
// writing to an anonymous temporary file, and no other descriptor above 2
// is passed on (New marks inherited ones close-on-exec); stdin is
// /dev/null; stdout and
// stderr are captured (the first 64 KiB of each) and logged. The
// environment is only PATH=/usr/sbin:/usr/bin:/sbin:/bin and LANG=C, and the
// working directory is /. Exit status 0 with at least one byte written is
// the content; a non-zero exit, zero bytes, more than MaxSize bytes, or a
// run past the timeout is "no such file" (errors.Is(err, fs.ErrNotExist)).
//
// Each run gets a process group of its own. When the program exits, or is
// killed at the timeout, whatever is left in its group is killed too, and
// the program is always reaped: a run leaves no zombie and no orphan
// behind. A program that must leave something running has to start it in
// a new session (setsid).
//
// # Caching and limits
//
// Results are cached per request (the name and its arguments): a success
// for TTL, a failure for NegativeTTL (1 s by default), because pxelinux
// probes names a program will refuse (UUIDs, hex prefixes) on every boot and
// every retry. Concurrent requests for one name share one run. At most
// Concurrency programs run at once; a request waits at most Timeout for a
// slot and then fails, so a boot storm cannot fork-bomb the server.
//
// A program must not access the mount it serves (the --file path): that
// lookup waits for the very run that makes it, until the timeout kills it.
package generator
