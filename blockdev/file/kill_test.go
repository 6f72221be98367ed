package file_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/file"
)

const (
	killChildEnv = "LUNWAY_FILE_KILL_CHILD"
	killPathEnv  = "LUNWAY_FILE_KILL_PATH"
	killBlocks   = 2048 // 1 MiB of 512-byte blocks
)

// killBlock is block b as written by write seq: seq, b, then byte(seq).
func killBlock(seq uint64, b int64) []byte {
	p := bytes.Repeat([]byte{byte(seq)}, 512)
	binary.LittleEndian.PutUint64(p, seq)
	binary.LittleEndian.PutUint64(p[8:], uint64(b))
	return p
}

// killChild writes 8-block runs at random places until it is killed,
// acknowledging each write after it returns; every tenth is FUA and every
// fiftieth is followed by a Flush.
func killChild(t *testing.T) {
	ctx := t.Context()
	d, err := file.Open(ctx, os.Getenv(killPathEnv), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	deadline := time.Now().Add(60 * time.Second) // in case nobody kills us
	for seq := uint64(1); time.Now().Before(deadline); seq++ {
		first := rng.Int64N(killBlocks - 8)
		var run []byte
		for b := first; b < first+8; b++ {
			run = append(run, killBlock(seq, b)...)
		}
		var flags blockdev.WriteFlags
		if seq%10 == 0 {
			flags = blockdev.FUA
		}
		if err := d.WriteAt(ctx, run, first*512, flags); err != nil {
			t.Fatal(err)
		}
		if seq%50 == 0 {
			if err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(out, "ack %d %d\n", seq, first)
		out.Flush()
	}
}

// TestKill9 kills a process writing to a file Device and checks, after
// reopening, that no block is torn and that every acknowledged write is
// there (a killed process loses nothing the kernel accepted).
func TestKill9(t *testing.T) {
	if os.Getenv(killChildEnv) == "1" {
		killChild(t)
		return
	}
	path := filepath.Join(t.TempDir(), "kill.img")
	d := openFile(t, path, &file.Options{Create: true, SizeBytes: killBlocks * 512})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"=1", killPathEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	latest := make([]uint64, killBlocks) // latest acknowledged seq per block
	sc := bufio.NewScanner(stdout)
	n := 0
	for ; n < 2000 && sc.Scan(); n++ {
		var seq uint64
		var first int64
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &seq, &first); err != nil {
			t.Fatalf("child said %q: %v", sc.Text(), err)
		}
		for b := first; b < first+8; b++ {
			latest[b] = seq
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if n < 100 {
		t.Fatalf("child acknowledged only %d writes before dying", n)
	}

	d = openFile(t, path, nil)
	defer d.Close()
	p := make([]byte, killBlocks*512)
	if err := d.ReadAt(t.Context(), p, 0); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < killBlocks; b++ {
		blk := p[b*512 : (b+1)*512]
		seq := binary.LittleEndian.Uint64(blk)
		switch {
		case seq == 0 && bytes.Equal(blk, make([]byte, 512)):
		case !bytes.Equal(blk, killBlock(seq, b)):
			t.Fatalf("block %d is torn or misplaced (seq %d)", b, seq)
		}
		if seq < latest[b] {
			t.Fatalf("block %d holds write %d, but write %d was acknowledged", b, seq, latest[b])
		}
	}
}
