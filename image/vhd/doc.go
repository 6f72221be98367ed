// Package vhd reads and writes Microsoft Virtual Hard Disk (VHD, qemu's
// "vpc") images, fixed and dynamic, following Microsoft's "Virtual Hard
// Disk Image Format Specification" 1.0.
//
//	fixed:    [data ........................][footer 512]
//	dynamic:  [footer copy 512][dynamic header 1024][BAT][block]...[footer 512]
//	          block = [sector bitmap, padded to 512][block data]
//
// Differencing disks are refused. The virtual size follows the rule the
// major implementations agree on: images made by Virtual PC ("vpc ") and
// old qemu ("qemu") are as large as their CHS geometry, all others as
// their footer's current size.
//
// The fixed writer is strictly sequential (works on a pipe); the dynamic
// writer goes back to fill in the block allocation table.
package vhd
