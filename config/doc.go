// Package config reads and validates pxebootfs's configuration file, so the
// rest of the program gets absolute paths and checked values or one error
// that names the file, the key and what is wrong.
//
// # Format
//
// An INI file with one section, [PXEBOOTFS]; keys are written "key: value" or
// "key = value", as the original Python tool (ConfigParser) accepted, and key
// names are case-insensitive like ConfigParser's. Lines starting with # or ;
// are comments; a # or ; preceded by a space also ends a value, so paths that
// merely contain those characters keep them. Values are trimmed, and an empty
// value leaves an optional key unset. Relative paths are relative to the
// directory holding the config file, not to the working directory.
//
// Anything outside [PXEBOOTFS], other sections, unknown keys and (where the
// INI parser lets us see it) a key set twice are errors rather than being
// ignored: a typo in a key name must not silently change what pxebootfs
// exports.
//
// # Modes
//
// With only pxe_template (and optionally static_dir, ethers, allow) set,
// pxebootfs runs in config-only mode: it renders pxelinux configs and nothing
// else. Setting node_dir, root_dir, overlay_dir and start_fsid together turns
// on full mode, in which nodes also get overlay roots exported over NFS; a
// partial set is an error. See Keys for every key, its default and meaning.
//
// # Adding a key
//
// Keys live in one table (keys.go): a name, a doc line, a default and a parse
// function that fills the Config. Checks spanning several keys run after all
// keys are parsed (crossChecks).
package config
