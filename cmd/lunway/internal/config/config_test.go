package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		bad  bool
	}{
		{"4096", 4096, false},
		{"1GiB", 1 << 30, false},
		{"1G", 1 << 30, false},
		{"512MiB", 512 << 20, false},
		{"4 KiB", 4 << 10, false},
		{"2TiB", 2 << 40, false},
		{"1.5GiB", 0, true},
		{"-1", 0, true},
		{"12XB", 0, true},
		{"", 0, true},
		{"99999999999PiB", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
	if s := Size(3 << 30).String(); s != "3GiB" {
		t.Errorf("String = %q", s)
	}
}

func TestDefaultValid(t *testing.T) {
	c := Default("", "")
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Targets[0].Name != DefaultTargetName || c.Targets[0].LUNs[0].LUN != 0 || c.Portals[0].Listen[0] != DefaultListen {
		t.Fatalf("unexpected default %+v", c)
	}
}

const full = `
data_dir: /var/lib/lunway
log: {level: debug, format: json}
iscsi:
  queue_depth: 64
  max_burst_length: 1MiB
  first_burst_length: 64KiB
  digests: false
  nop_interval: 10s
portal_groups:
  - tag: 1
    listen: ["0.0.0.0:3260", "[::]:3260"]
  - tag: 2
    listen: ["10.0.0.2:3260"]
    alua_state: standby
targets:
  - name: iqn.2026-11.dev.lunway:db
    portal_groups: [1, 2]
    acl:
      initiators: [iqn.1993-08.org.debian:01:abc]
      networks: [10.0.0.0/8, "fd00::/8"]
    chap: {user: u, secret: "0123456789ab"}
    luns:
      - lun: 0
        size: 10GiB
        backend: {type: file, path: db.img}
      - lun: 1
        size: 100GiB
        backend:
          type: blockmap
          volume: vol1
          store: {type: dir, path: volumes}
`

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Targets[0].LUNs[1].Size != 100<<30 || c.ISCSI.MaxBurstLength != 1<<20 || c.ISCSI.NopInterval.D(0).String() != "10s" {
		t.Fatalf("parsed %+v", c)
	}
	// Round trip through Marshal.
	c2 := c.Clone()
	a, _ := c.Marshal()
	b, _ := c2.Marshal()
	if string(a) != string(b) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", a, b)
	}
}

func TestUnknownFieldNamed(t *testing.T) {
	_, err := Parse([]byte("targets:\n  - name: iqn.2026-11.dev.lunway:x\n    lunz: []\n"))
	if err == nil || !strings.Contains(err.Error(), "lunz") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestValidationNamesField(t *testing.T) {
	for _, tc := range []struct{ yaml, field string }{
		{"targets: [{name: 'IQN.bad', luns: []}]", "targets[0].name"},
		{"targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, size: 1000, backend: {type: file, path: a}}]}]", "targets[0].luns[0].size"},
		{"targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, backend: {type: nfs}}]}]", "targets[0].luns[0].backend.type"},
		{"targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, backend: {type: file, path: a}}, {lun: 0, backend: {type: file, path: b}}]}]", "targets[0].luns[1].lun"},
		{"targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, backend: {type: file, path: a}}, {lun: 1, backend: {type: file, path: a}}]}]", "targets[0].luns[1].backend.path"},
		{"targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, backend: {type: blockmap, volume: 'a/b', store: {type: dir, path: v}}}]}]", "targets[0].luns[0].backend.volume"},
		{"targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, backend: {type: rbd, image: x, ceph: {mon_host: 1.2.3.4}}}]}]", "targets[0].luns[0].backend.ceph.pool"},
		{"targets: [{name: iqn.2026-11.dev.x:a, portal_groups: [7], luns: []}]", "targets[0].portal_groups[0]"},
		{"targets: [{name: iqn.2026-11.dev.x:a, acl: {networks: [10.0.0.0/33]}, luns: []}]", "targets[0].acl.networks[0]"},
		{"targets: [{name: iqn.2026-11.dev.x:a, chap: {user: u}, luns: []}]", "targets[0].chap.secret"},
		{"portal_groups: [{tag: 1, listen: ['nonsense']}]", "portal_groups[0].listen[0]"},
		{"iscsi: {queue_depth: 100000}", "iscsi.queue_depth"},
		{"iscsi: {max_burst_length: 4KiB, first_burst_length: 8KiB}", "iscsi.first_burst_length"},
		{"iscsi: {first_burst_length: 2MiB}", "iscsi.first_burst_length"},
		{"iscsi: {nop_timeout: -1s}", "iscsi.nop_timeout"},
		{"log: {level: loud}", "log.level"},
	} {
		c, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Errorf("%s: parse: %v", tc.yaml, err)
			continue
		}
		c.ApplyDefaults()
		err = c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s:\n got %v\nwant field %s", tc.yaml, err, tc.field)
		}
	}
}

func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "lunway.yaml")
	c := Default("", dir)
	c.ApplyDefaults()
	if err := c.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Targets[0].Name != DefaultTargetName {
		t.Fatalf("loaded %+v", got)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("leftover files: %v", ents)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte("targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, size: 1GiB, backend: {type: file, path: a}}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		c.ApplyDefaults()
		_ = c.Validate()
	})
}
