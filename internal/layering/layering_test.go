// Package layering enforces DESIGN.md's import rules: imports point down
// only. The SCSI target knows storage only through blockdev; storage layers
// know nothing of the target; only cmd/lunway names concrete backends.
package layering

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/lunway/lunway/"

type pkg struct {
	ImportPath string
	Deps       []string
}

func list(t *testing.T, tags string) []pkg {
	t.Helper()
	args := []string{"list", "-json=ImportPath,Deps"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, mod+"...")
	cmd := exec.Command("go", args...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rules: packages under the key prefix must not depend on packages under
// any of the listed prefixes.
var rules = map[string][]string{
	mod + "target/":   {mod + "blockmap", mod + "cache", mod + "backend", mod + "cmd/", mod + "image", mod + "bench"},
	mod + "blockdev":  {mod + "target/scsi", mod + "target/iscsi", mod + "blockmap", mod + "cache", mod + "cmd/", mod + "bench"},
	mod + "backend":   {mod + "target/", mod + "blockmap", mod + "cache", mod + "cmd/", mod + "image", mod + "bench"},
	mod + "blockmap":  {mod + "target/", mod + "cache", mod + "cmd/", mod + "image", mod + "bench"},
	mod + "cache":     {mod + "target/", mod + "blockmap", mod + "cmd/", mod + "image", mod + "bench"},
	mod + "image":     {mod + "target/", mod + "blockmap", mod + "backend", mod + "cache", mod + "cmd/"},
	mod + "internal/": {mod + "cmd/"},
}

// exempt lists deliberate exceptions, each with its reason.
var exempt = map[string]string{
	// blockdev/iscsi is a Device over a remote LUN: it is an initiator, not
	// part of the target, and depends on the initiator package by design.
	mod + "blockdev/iscsi": "a Device on a remote iSCSI LUN uses target/initiator",
}

func TestLayering(t *testing.T) {
	for _, tags := range []string{"", "ceph,pacific"} {
		for _, p := range list(t, tags) {
			if strings.HasSuffix(p.ImportPath, ".test") || strings.HasSuffix(p.ImportPath, "_test") {
				continue
			}
			for prefix, banned := range rules {
				if !strings.HasPrefix(p.ImportPath, prefix) {
					continue
				}
				for _, d := range p.Deps {
					for _, b := range banned {
						if !strings.HasPrefix(d, b) || d == p.ImportPath {
							continue
						}
						if _, ok := exempt[p.ImportPath]; ok && strings.HasPrefix(d, mod+"target/") {
							continue
						}
						t.Errorf("%s (tags %q) depends on %s: DESIGN.md says imports point down only", p.ImportPath, tags, d)
					}
				}
			}
		}
	}
}
