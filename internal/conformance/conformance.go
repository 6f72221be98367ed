// Package conformance runs libiscsi's iscsi-test-cu against a target and
// judges it against a checked-in list of tests expected to pass.
//
// iscsi-test-cu (CUnit) reports a test whose feature the target lacks as
// "[SKIPPED]" yet counts it as passed; Parse counts it as skipped, so that a
// pass always means the test exercised the target.
package conformance

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

// Outcome of one test.
type Outcome string

// Outcomes.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip"
)

// Results maps "Suite.Test" to its outcome.
type Results map[string]Outcome

// Count returns the number of tests with outcome o.
func (r Results) Count(o Outcome) int {
	n := 0
	for _, v := range r {
		if v == o {
			n++
		}
	}
	return n
}

// Names returns the sorted names of the tests with outcome o.
func (r Results) Names(o Outcome) []string {
	var out []string
	for k, v := range r {
		if v == o {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

var (
	suiteRe = regexp.MustCompile(`^Suite: (\S+)`)
	testRe  = regexp.MustCompile(`^  Test: (\S+) \.\.\.(.*)$`)
	// bracketRe matches libiscsi's message tags.
	bracketRe = regexp.MustCompile(`\[(FAILED|SKIPPED)\]`)
	failedRe  = regexp.MustCompile(`\bFAILED\b`)
	passedRe  = regexp.MustCompile(`\bpassed\b`)
)

// Parse reads iscsi-test-cu's verbose (-v) output.
func Parse(out []byte) Results {
	res := Results{}
	var suite, cur string
	var block strings.Builder
	flush := func() {
		if cur == "" {
			return
		}
		// CUnit's verdict is a bare "passed" or "FAILED"; libiscsi's own
		// "[FAILED] ..." and "[SKIPPED] ..." lines are messages (a test may
		// log a command failing as it expects and still pass).
		b := block.String()
		verdict := bracketRe.ReplaceAllString(b, "")
		switch {
		case failedRe.MatchString(verdict):
			res[cur] = Fail
		case !passedRe.MatchString(verdict):
			res[cur] = Fail // no verdict: the run died inside the test
		case strings.Contains(b, "[SKIPPED]"):
			res[cur] = Skip
		default:
			res[cur] = Pass
		}
		cur = ""
		block.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := suiteRe.FindStringSubmatch(line); m != nil {
			flush()
			suite = m[1]
			continue
		}
		if m := testRe.FindStringSubmatch(line); m != nil {
			flush()
			cur = suite + "." + m[1]
			block.WriteString(m[2] + "\n")
			continue
		}
		if strings.HasPrefix(line, "Run Summary") {
			flush()
			continue
		}
		if cur != "" {
			block.WriteString(line + "\n")
		}
	}
	flush()
	return res
}

// Options for Run.
type Options struct {
	// Test is the --test pattern (FAMILY[.SUITE[.TEST]]); empty runs ALL.
	Test string
	// Initiator and Initiator2 are the initiator names (-i, -I).
	Initiator, Initiator2 string
	// Dataloss allows destructive tests (-d); the LUN is overwritten.
	Dataloss bool
	// Multipath is a second URL for MultipathIO tests.
	Multipath string
}

// Run runs iscsi-test-cu against url and returns its parsed results and raw output.
func Run(ctx context.Context, url string, opts Options) (Results, []byte, error) {
	args := []string{"-v"}
	if opts.Dataloss {
		args = append(args, "-d")
	}
	if opts.Test != "" {
		args = append(args, "--test="+opts.Test)
	}
	if opts.Initiator != "" {
		args = append(args, "-i", opts.Initiator)
	}
	if opts.Initiator2 != "" {
		args = append(args, "-I", opts.Initiator2)
	}
	args = append(args, url)
	if opts.Multipath != "" {
		args = append(args, opts.Multipath)
	}
	cmd := exec.CommandContext(ctx, "iscsi-test-cu", args...)
	out, err := cmd.CombinedOutput()
	res := Parse(out)
	if len(res) == 0 {
		return res, out, fmt.Errorf("iscsi-test-cu ran no tests (%v): %s", err, tail(out, 2000))
	}
	// iscsi-test-cu exits non-zero when tests fail; the results say which.
	return res, out, nil
}

// LoadExpected reads a list of test names, one per line; '#' starts a comment.
func LoadExpected(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names, nil
}

// Regressions returns the expected tests that did not pass, with their outcome.
func Regressions(res Results, expected []string) []string {
	var out []string
	for _, name := range expected {
		if o, ok := res[name]; !ok {
			out = append(out, name+" (did not run)")
		} else if o != Pass {
			out = append(out, fmt.Sprintf("%s (%s)", name, o))
		}
	}
	return out
}

// NewPasses returns tests that passed but are not in the expected list.
func NewPasses(res Results, expected []string) []string {
	in := map[string]bool{}
	for _, n := range expected {
		in[n] = true
	}
	var out []string
	for _, n := range res.Names(Pass) {
		if !in[n] {
			out = append(out, n)
		}
	}
	return out
}

// Summary is a one-line count.
func (r Results) Summary() string {
	return fmt.Sprintf("%d tests: %d passed, %d failed, %d skipped",
		len(r), r.Count(Pass), r.Count(Fail), r.Count(Skip))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
