package scsi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PRStore persists an LU's persistent reservations when an initiator
// asked for persistence through power loss (APTPL=1). Save is called with
// the LU's reservation lock held, before the PERSISTENT RESERVE OUT that
// caused it completes; it must be durable when it returns. Load is called
// once, by NewLU, and returns nil data when nothing was saved. The data
// is opaque to the store (a small versioned JSON document).
//
// A PRStore is used by one LU; its methods are not called concurrently.
type PRStore interface {
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, data []byte) error
}

// ErrPRState reports persisted reservation data that cannot be used.
var ErrPRState = errors.New("scsi: invalid persisted reservation state")

// maxRegistrations bounds the registrations of one LU (PR OUT beyond it
// gets INSUFFICIENT REGISTRATION RESOURCES).
const maxRegistrations = 1024

// prSnapshot is the persisted form of the reservation state.
type prSnapshot struct {
	Version       int             `json:"version"`
	APTPL         bool            `json:"aptpl"`
	Generation    uint32          `json:"generation"`
	Type          byte            `json:"type,omitempty"`
	Holder        int             `json:"holder"` // index into Registrations, -1: none
	Registrations []prSnapshotReg `json:"registrations,omitempty"`
}

type prSnapshotReg struct {
	Key       uint64 `json:"key"`
	Initiator string `json:"initiator"`
	ISID      string `json:"isid,omitempty"` // 12 hex digits; empty: any ISID
	RelPort   uint16 `json:"rel_port,omitempty"`
	AllPorts  bool   `json:"all_ports,omitempty"`
}

const prSnapshotVersion = 1

func (p *prState) snapshotLocked() prSnapshot {
	s := prSnapshot{Version: prSnapshotVersion, APTPL: p.mu.aptpl, Generation: p.mu.generation,
		Type: p.mu.resType, Holder: -1}
	for i, g := range p.mu.regs {
		sr := prSnapshotReg{Key: g.key, Initiator: g.initiator, RelPort: g.relPort, AllPorts: g.allPorts}
		if !g.anyISID {
			sr.ISID = hex.EncodeToString(g.isid[:])
		}
		s.Registrations = append(s.Registrations, sr)
		if g == p.mu.holder {
			s.Holder = i
		}
	}
	return s
}

// restoreLocked replaces the persistent reservation state with s (the
// SCSI-2 reservation is not part of it).
func (p *prState) restoreLocked(s prSnapshot) {
	p.mu.regs, p.mu.holder = nil, nil
	for i, sr := range s.Registrations {
		g := &registration{key: sr.Key, initiator: sr.Initiator, relPort: sr.RelPort, allPorts: sr.AllPorts}
		if sr.ISID == "" {
			g.anyISID = true
		} else {
			b, _ := hex.DecodeString(sr.ISID)
			copy(g.isid[:], b)
		}
		p.mu.regs = append(p.mu.regs, g)
		if i == s.Holder {
			p.mu.holder = g
		}
	}
	p.mu.generation, p.mu.aptpl, p.mu.resType = s.Generation, s.APTPL, s.Type
	if p.mu.holder == nil {
		p.mu.resType = 0
	}
	p.updateActiveLocked()
}

// decodePRSnapshot parses and validates persisted state. It never panics.
func decodePRSnapshot(data []byte) (prSnapshot, error) {
	var s prSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: %v", ErrPRState, err)
	}
	if s.Version != prSnapshotVersion {
		return s, fmt.Errorf("%w: version %d", ErrPRState, s.Version)
	}
	if len(s.Registrations) > maxRegistrations {
		return s, fmt.Errorf("%w: %d registrations", ErrPRState, len(s.Registrations))
	}
	if s.Holder < -1 || s.Holder >= len(s.Registrations) {
		return s, fmt.Errorf("%w: holder %d", ErrPRState, s.Holder)
	}
	if (s.Type == 0) != (s.Holder == -1) || (s.Type != 0 && !validPRType(s.Type)) {
		return s, fmt.Errorf("%w: reservation type %d with holder %d", ErrPRState, s.Type, s.Holder)
	}
	for _, r := range s.Registrations {
		if r.Key == 0 || r.Initiator == "" || len(r.Initiator) > 223 {
			return s, fmt.Errorf("%w: registration %+v", ErrPRState, r)
		}
		if r.ISID != "" {
			if b, err := hex.DecodeString(r.ISID); err != nil || len(b) != 6 {
				return s, fmt.Errorf("%w: ISID %q", ErrPRState, r.ISID)
			}
		}
	}
	return s, nil
}

// savePRLocked writes the state through the PRStore: the whole state when
// APTPL is set, an empty one (nothing survives a restart) when not.
func (lu *LU) savePRLocked(ctx context.Context) error {
	s := prSnapshot{Version: prSnapshotVersion, Holder: -1}
	if lu.pr.mu.aptpl {
		s = lu.pr.snapshotLocked()
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return lu.opts.PRStore.Save(ctx, data)
}

// loadPR restores state saved with APTPL=1.
func (lu *LU) loadPR() error {
	data, err := lu.opts.PRStore.Load(context.Background())
	if err != nil {
		return fmt.Errorf("scsi: loading persistent reservations: %w", err)
	}
	if data == nil {
		return nil
	}
	s, err := decodePRSnapshot(data)
	if err != nil {
		return err
	}
	if !s.APTPL {
		return nil
	}
	lu.pr.mu.Lock()
	defer lu.pr.mu.Unlock()
	lu.pr.restoreLocked(s)
	return nil
}

// FilePRStore returns a PRStore keeping the state in the file at path. A
// Save writes a temporary file in the same directory, fsyncs it, renames
// it over path and fsyncs the directory, so that a crash leaves either the
// old or the new state.
func FilePRStore(path string) PRStore { return &filePRStore{path: path} }

type filePRStore struct{ path string }

// maxPRFileBytes bounds the persisted state read back.
const maxPRFileBytes = 1 << 20

func (s *filePRStore) Load(ctx context.Context) ([]byte, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxPRFileBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrPRState, s.path, st.Size())
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, err
	}
	return data, nil
}

func (s *filePRStore) Save(ctx context.Context, data []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, s.path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
