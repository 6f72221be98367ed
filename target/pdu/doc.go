// Package pdu is the pure iSCSI wire codec of RFC 7143: the 48-byte Basic
// Header Segment of every opcode, additional header segments, data segments
// with padding, CRC32C header and data digests, and the key=value text of
// Login and Text PDUs with the value types of the negotiation (numbers with
// ranges, booleans with AND/OR results, lists of values).
//
// Everything here is bytes in, values out: no goroutines, no clocks, no
// logging. Every length read from the wire is checked against a cap before
// anything is allocated, and no decoder panics on any input. Encoders append
// to a caller's buffer.
//
// The layout of a PDU on the wire (RFC 7143 11.1):
//
//	+----------------------+  0
//	| Basic Header Segment |  48 bytes (BHS)
//	+----------------------+  48
//	| Additional Header    |  TotalAHSLength*4 bytes (optional)
//	| Segments (AHS)       |
//	+----------------------+
//	| Header-Digest        |  4 bytes CRC32C over BHS+AHS (optional)
//	+----------------------+
//	| Data Segment         |  DataSegmentLength bytes, padded to 4
//	+----------------------+
//	| Data-Digest          |  4 bytes CRC32C over data+padding (optional)
//	+----------------------+
package pdu
