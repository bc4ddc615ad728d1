// Package e2e tests the real pxebootfs binary end to end: mounted over a
// real tftpd-hpa's pxelinux.cfg on loopback, fetched by real TFTP clients.
// It holds tests and benchmarks only.
package e2e
