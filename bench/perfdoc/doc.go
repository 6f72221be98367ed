// Package perfdoc maintains docs/PERFORMANCE.md: it replaces the generated
// sections of the document (the text between <!-- BEGIN GENERATED name -->
// and <!-- END GENERATED name --> markers) and leaves the hand-written prose
// around them alone, and it turns `go test -bench` output into a Markdown
// table of medians. `make bench` (bench/run-all.sh) drives it through
// bench/cmd/perfdoc.
package perfdoc
