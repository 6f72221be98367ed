package dir_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/dir"
)

const (
	killChildEnv = "LUNWAY_DIR_KILL_CHILD"
	killRootEnv  = "LUNWAY_DIR_KILL_ROOT"
)

// version i of a Put object: 8 bytes of i, then byte(i), size putSize(i).
func putSize(i uint64) int { return 100 + int(i*7919%30000) }

func putData(i uint64) []byte {
	b := bytes.Repeat([]byte{byte(i)}, putSize(i))
	binary.LittleEndian.PutUint64(b, i)
	return b
}

// sector of version i written by WriteAt: 8 bytes of i, then byte(i).
func sectorData(i uint64) []byte {
	b := bytes.Repeat([]byte{byte(i)}, 512)
	binary.LittleEndian.PutUint64(b, i)
	return b
}

// killChild stores versions until it is killed, printing an
// acknowledgement after each call returns.
func killChild(t *testing.T) {
	ctx := t.Context()
	s, err := dir.Open(ctx, os.Getenv(killRootEnv), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(60 * time.Second) // in case nobody kills us
	for i := uint64(1); time.Now().Before(deadline); i++ {
		var line string
		if i%3 == 0 {
			name, sec := fmt.Sprintf("w/%d", i%4), int64(i/3%16)
			if err := s.WriteAt(ctx, name, sectorData(i), sec*512); err != nil {
				t.Fatal(err)
			}
			line = fmt.Sprintf("ack %s %d %d\n", name, sec, i)
		} else {
			name := fmt.Sprintf("p/%d", i%10)
			if err := s.Put(ctx, name, putData(i)); err != nil {
				t.Fatal(err)
			}
			line = fmt.Sprintf("ack %s -1 %d\n", name, i)
		}
		out.WriteString(line)
		out.Flush()
	}
}

// TestKill9 kills a process in the middle of Puts and WriteAts, then
// checks that every acknowledged call survived, that no object is half
// written, and that Open removes the temporary files.
func TestKill9(t *testing.T) {
	if os.Getenv(killChildEnv) == "1" {
		killChild(t)
		return
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"=1", killRootEnv+"="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type key struct {
		name string
		sec  int64
	}
	acked := map[key]uint64{}
	sc := bufio.NewScanner(stdout)
	for n := 0; n < 300 && sc.Scan(); n++ {
		var k key
		var i uint64
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d %d", &k.name, &k.sec, &i); err != nil {
			t.Fatalf("child said %q: %v", sc.Text(), err)
		}
		acked[k] = i
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 10 {
		t.Fatalf("child acknowledged only %d objects before dying", len(acked))
	}

	s, err := dir.Open(t.Context(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "~tmp-") {
			t.Errorf("temporary file left after Open: %s", path)
		}
		return nil
	})
	read := func(name string) []byte {
		info, err := s.Stat(t.Context(), name)
		if err != nil {
			t.Fatalf("Stat(%s): %v", name, err)
		}
		p := make([]byte, info.Size)
		if _, err := s.ReadAt(t.Context(), name, p, 0); err != nil {
			t.Fatalf("ReadAt(%s): %v", name, err)
		}
		return p
	}
	for k, i := range acked {
		p := read(k.name)
		if k.sec < 0 {
			got := binary.LittleEndian.Uint64(p)
			if got < i || !bytes.Equal(p, putData(got)) {
				t.Errorf("%s: version %d (whole: %v), acknowledged %d", k.name, got, bytes.Equal(p, putData(got)), i)
			}
			continue
		}
		sec := p[k.sec*512 : (k.sec+1)*512]
		got := binary.LittleEndian.Uint64(sec)
		if got < i || !bytes.Equal(sec, sectorData(got)) {
			t.Errorf("%s sector %d: version %d, acknowledged %d", k.name, k.sec, got, i)
		}
	}
	// Everything listed is whole, acknowledged or not.
	err = s.List(t.Context(), "p/", func(info backend.ObjectInfo) error {
		p := read(info.Name)
		if len(p) < 8 || !bytes.Equal(p, putData(binary.LittleEndian.Uint64(p))) {
			t.Errorf("%s is not a whole version", info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
