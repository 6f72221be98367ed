package dir

import (
	"path"
	"strings"
	"testing"

	"github.com/lunway/lunway/backend"
)

var pathCases = []struct {
	name, rel string
}{
	{"a", "a"},
	{"a/b", "a@/b"},
	{"a/b/c", "a@/b@/c"},
	{"vol/map/000001", "vol@/map@/000001"},
	{"a.b/-_c", "a.b@/-_c"},
	{"..a/b..", "..a@/b.."},
}

func TestObjectPath(t *testing.T) {
	for _, c := range pathCases {
		if got := objectPath(c.name); got != c.rel {
			t.Errorf("objectPath(%q) = %q, want %q", c.name, got, c.rel)
		}
		if got, ok := objectName(c.rel); !ok || got != c.name {
			t.Errorf("objectName(%q) = %q, %v; want %q", c.rel, got, ok, c.name)
		}
	}
	for _, rel := range []string{"", "a@", "a/b", "a@/b@", "~lock", "a@/~tmp-b-1-2", "a@@/b", "/a", "a@//b", "../a",
		"a@/./b", "x~y", "é", strings.Repeat("n", 201)} {
		if name, ok := objectName(rel); ok {
			t.Errorf("objectName(%q) = %q; want no object", rel, name)
		}
	}
}

// FuzzObjectPath checks that objectPath and objectName are inverse
// bijections between valid names and the store's file paths, and that a
// mapped path never escapes the root or collides with the store's own
// files.
func FuzzObjectPath(f *testing.F) {
	for _, c := range pathCases {
		f.Add(c.name)
		f.Add(c.rel)
	}
	f.Add("~tmp-a-1")
	f.Add("a@/b@")
	f.Fuzz(func(t *testing.T, s string) {
		if name, ok := objectName(s); ok {
			if back := objectPath(name); back != s {
				t.Fatalf("objectName(%q) = %q but objectPath(%q) = %q", s, name, name, back)
			}
		}
		if backend.ValidName(s) == nil {
			rel := objectPath(s)
			if path.Clean(rel) != rel || path.IsAbs(rel) {
				t.Fatalf("objectPath(%q) = %q is not a clean relative path", s, rel)
			}
			for _, e := range strings.Split(rel, "/") {
				if e == "." || e == ".." || strings.Contains(e, ownMarker) {
					t.Fatalf("objectPath(%q) = %q has element %q", s, rel, e)
				}
			}
			if back, ok := objectName(rel); !ok || back != s {
				t.Fatalf("objectName(objectPath(%q)) = %q, %v", s, back, ok)
			}
		}
	})
}
