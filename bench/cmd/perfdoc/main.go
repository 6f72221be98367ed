// Command perfdoc maintains docs/PERFORMANCE.md (see package
// bench/perfdoc).
//
//	perfdoc replace DOC NAME=FILE...   replace the generated sections NAME with FILE's contents
//	perfdoc sections DOC               list the generated sections
//	perfdoc gobench [BASE:UNIT] < bench.txt
//	                                   Markdown table of medians of `go test -bench` output, and
//	                                   with BASE:UNIT a table of each benchmark's UNIT over BASE's
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/lunway/lunway/bench/perfdoc"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "perfdoc:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: perfdoc replace DOC NAME=FILE... | sections DOC | gobench")
	}
	switch args[0] {
	case "gobench":
		bs, err := perfdoc.ParseGoBench(os.Stdin)
		if err != nil {
			return err
		}
		if len(bs) == 0 {
			return fmt.Errorf("no benchmark results on standard input")
		}
		fmt.Print(perfdoc.GoBenchTable(bs))
		if len(args) == 2 {
			base, unit, ok := strings.Cut(args[1], ":")
			if !ok {
				return fmt.Errorf("%q is not BASE:UNIT", args[1])
			}
			if t := perfdoc.RatioTable(bs, base, unit); t != "" {
				fmt.Printf("\nRatios to %s (%s, medians; above 1 means more than the baseline):\n\n%s", base, unit, t)
			}
		}
		return nil
	case "sections":
		if len(args) != 2 {
			return fmt.Errorf("usage: perfdoc sections DOC")
		}
		doc, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(perfdoc.Sections(doc), "\n"))
		return nil
	case "replace":
		if len(args) < 3 {
			return fmt.Errorf("usage: perfdoc replace DOC NAME=FILE...")
		}
		doc, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		for _, a := range args[2:] {
			name, file, ok := strings.Cut(a, "=")
			if !ok {
				return fmt.Errorf("%q is not NAME=FILE", a)
			}
			body, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if doc, err = perfdoc.Replace(doc, name, body); err != nil {
				return err
			}
		}
		tmp := args[1] + ".tmp"
		if err := os.WriteFile(tmp, doc, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, args[1])
	}
	return fmt.Errorf("unknown command %q", args[0])
}
