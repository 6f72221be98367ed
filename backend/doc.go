// Package backend defines Store, the object-shaped storage interface beneath
// blockmap volumes (named objects: read at offset, put whole, delete, list,
// stat), its optional capabilities, and its errors.
//
// Implementations: mem (in memory), dir (a local directory, one file per
// object), and, in their own packages, rados and s3. fault wraps any Store
// to inject failures and to simulate crashes; backendtest is the
// conformance suite every Store and every decorator passes.
package backend
