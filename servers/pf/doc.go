// Package pf is keepnet's packet filter: a rule set in the spirit of
// OpenBSD's pf.conf, and connection tracking whose state table survives a
// crash of the pf server. This package is the protocol-independent core,
// with no I/O: the pf server asks a Filter for the verdict on each IPv4
// datagram ip receives, sends or forwards.
//
// TODO: full package doc.
package pf
