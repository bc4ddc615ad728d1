// Package node is the identity of a network-booted node, the one type every
// other package uses for it.
//
// A node is its IPv4 address: the address pxelinux puts in its file name
// (8 upper-case hex digits, "C0A80102" for 192.168.1.2), the client an NFS
// export is restricted to, and the key of its record. [ID] is that address as
// a small comparable value, modelled on netip.Addr: the zero ID means "no
// node", String gives the hex name, and text marshalling stores it in that
// form. IDs are made only by the parsers here, where a TFTP name or an
// admin's argument enters the program; no other package re-checks a string.
//
// The package also holds what the filesystem asks of provisioning
// ([Provisioner], [Node], [Root]), so that the FUSE side and the
// provisioning side share types without importing each other.
package node
