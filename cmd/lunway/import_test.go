package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/lunway/lunway/blockdev/iscsi"
	"github.com/lunway/lunway/image"
)

var endpointGolden = []struct {
	arg   string
	flags endpointFlags
	want  endpointSpec
	err   string
}{
	{arg: "iscsi://127.0.0.1:3261/iqn.2026-11.dev.lunway:a/3", want: endpointSpec{kind: "iscsi",
		target: iscsi.Target{Addr: "127.0.0.1:3261", IQN: "iqn.2026-11.dev.lunway:a", LUN: 3}}},
	{arg: "iscsi://bob%pw@h/iqn.x:y/0", want: endpointSpec{kind: "iscsi",
		target: iscsi.Target{Addr: "h:3260", IQN: "iqn.x:y", User: "bob", Secret: "pw"}}},
	{arg: "volume:/srv/store/vm1", want: endpointSpec{kind: "volume", store: "/srv/store", volume: "vm1"}},
	{arg: "volume:store/vm1/", want: endpointSpec{kind: "volume", store: "store", volume: "vm1"}},
	{arg: "volume:vm1", want: endpointSpec{kind: "volume", store: ".", volume: "vm1"}},
	{arg: "vm1", flags: endpointFlags{store: "/s"}, want: endpointSpec{kind: "volume", store: "/s", volume: "vm1"}},
	{arg: "lun:iqn.2026-11.dev.lunway:db/7", want: endpointSpec{kind: "lun", iqn: "iqn.2026-11.dev.lunway:db", lun: 7}},
	{flags: endpointFlags{target: "iqn.x:y", lun: 2}, want: endpointSpec{kind: "lun", iqn: "iqn.x:y", lun: 2}},
	{arg: "/var/lib/lunway/lun0.img", want: endpointSpec{kind: "file", path: "/var/lib/lunway/lun0.img"}},
	{arg: "file:odd:name.img", want: endpointSpec{kind: "file", path: "odd:name.img"}},
	{arg: "/dev/sdb", want: endpointSpec{kind: "file", path: "/dev/sdb"}},
	{arg: "iscsi://h/iqn.x:y", err: "bad URL"},
	{arg: "volume:/srv/store/bad name", err: "volume:STORE-DIR/NAME"},
	{arg: "volume:", err: "volume:STORE-DIR/NAME"},
	{arg: "bad/name", flags: endpointFlags{store: "/s"}, err: "volume name"},
	{arg: "lun:iqn.x:y", err: "lun:IQN/N"},
	{arg: "lun:iqn.x:y/x", err: "bad LUN number"},
	{arg: "lun:iqn.x:y/16384", err: "bad LUN number"},
	{arg: "x", flags: endpointFlags{target: "iqn.x:y", lun: 1}, err: "replace the LUN argument"},
	{flags: endpointFlags{target: "iqn.x:y", lun: -1}, err: "go together"},
	{flags: endpointFlags{lun: 99999, target: "iqn.x:y"}, err: "0..16383"},
	{arg: "file:", err: "without a path"},
	{arg: "", err: "missing"},
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range endpointGolden {
		f := tc.flags
		if f.lun == 0 && f.target == "" {
			f.lun = -1
		}
		got, err := parseEndpoint(tc.arg, &f)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseEndpoint(%q, %+v) = %+v, %v; want an error with %q", tc.arg, tc.flags, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseEndpoint(%q, %+v) = %+v, %v; want %+v", tc.arg, tc.flags, got, err, tc.want)
		}
		if strings.Contains(got.String(), "pw") {
			t.Errorf("String() of %q shows the secret: %s", tc.arg, got)
		}
	}
}

// FuzzParseEndpoint: no argument makes parseEndpoint panic, and what it
// accepts has a kind and names something.
func FuzzParseEndpoint(f *testing.F) {
	for _, tc := range endpointGolden {
		f.Add(tc.arg, tc.flags.store)
	}
	f.Fuzz(func(t *testing.T, arg, store string) {
		fl := endpointFlags{store: store, lun: -1}
		s, err := parseEndpoint(arg, &fl)
		if err != nil {
			return
		}
		switch s.kind {
		case "iscsi":
			if s.target.Addr == "" || s.target.IQN == "" {
				t.Fatalf("%q: %+v", arg, s)
			}
		case "volume":
			if s.store == "" || s.volume == "" {
				t.Fatalf("%q: %+v", arg, s)
			}
		case "lun":
			if s.iqn == "" || s.lun > 16383 {
				t.Fatalf("%q: %+v", arg, s)
			}
		case "file":
			if s.path == "" {
				t.Fatalf("%q: %+v", arg, s)
			}
		default:
			t.Fatalf("%q: kind %q", arg, s.kind)
		}
		_ = s.String()
	})
}

func TestExportFormatOptions(t *testing.T) {
	for _, tc := range []struct {
		f       exportFlags
		dst     string
		format  image.Format
		sub     string
		name    string
		version int
		cluster int
		err     string
	}{
		{dst: "a.qcow2", format: image.QCOW2, name: "qcow2"},
		{dst: "a.VMDK", format: image.VMDK, sub: "monolithicSparse", name: "vmdk"},
		{dst: "a.vhd", format: image.VHD, sub: "dynamic", name: "vhd"},
		{dst: "a.vhdx", format: image.VHDX, sub: "dynamic", name: "vhdx"},
		{dst: "a.img", format: image.Raw, name: "raw"},
		{f: exportFlags{format: "vpc"}, dst: "x", format: image.VHD, sub: "dynamic", name: "vhd"},
		{f: exportFlags{format: "vhd-fixed"}, dst: "x.vhdx", format: image.VHD, sub: "fixed", name: "vhd-fixed"},
		{f: exportFlags{format: "vmdk-stream"}, dst: "-", format: image.VMDK, sub: "streamOptimized", name: "vmdk-stream"},
		{f: exportFlags{format: "vmdk-flat"}, dst: "x", format: image.VMDK, sub: "monolithicFlat", name: "vmdk-flat"},
		{f: exportFlags{format: "vhdx-fixed"}, dst: "x", format: image.VHDX, sub: "fixed", name: "vhdx-fixed"},
		{f: exportFlags{format: "qcow2", compat: "0.10", clusterSize: "4KiB"}, dst: "x", format: image.QCOW2, name: "qcow2", version: 2, cluster: 4096},
		{dst: "x.bin", err: "--format is needed"},
		{f: exportFlags{format: "qcow3"}, dst: "x", err: "not one of"},
		{f: exportFlags{format: "vmdk", compat: "0.10"}, dst: "x", err: "qcow2 only"},
		{f: exportFlags{format: "qcow2", compat: "2"}, dst: "x", err: "1.1 or 0.10"},
		{f: exportFlags{format: "qcow2", clusterSize: "lots"}, dst: "x", err: "--cluster-size"},
	} {
		co, name, err := tc.f.createOptions(tc.dst)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v %s: %v, want %q", tc.f, tc.dst, err, tc.err)
			}
			continue
		}
		if err != nil || co.Format != tc.format || co.Subformat != tc.sub || name != tc.name || co.QCOW2Version != tc.version || co.ClusterSize != tc.cluster {
			t.Errorf("%+v %s: %+v %q %v", tc.f, tc.dst, co, name, err)
		}
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{
		512:         "512 B",
		1 << 20:     "1.0 MiB",
		1 << 30:     "1.0 GiB",
		25 << 20:    "25.0 MiB",
		1<<30 + 512: "1.0 GiB (1073742336 bytes)",
		3 << 9:      "1.5 KiB (1536 bytes)",
	} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	inner := errors.New("inner")
	err := flat(usageError{errors.Join(inner, errors.New("second"))})
	var ue usageError
	if !errors.As(err, &ue) || !errors.Is(err, inner) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("flat: %q (usage %v, chain %v)", err, errors.As(err, &ue), errors.Is(err, inner))
	}
	if flat(nil) != nil {
		t.Fatal("flat(nil) != nil")
	}
}
