package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// Identity is what a hypervisor recognizes a LUN by: the NAA designator
// (VPD 0x83) and the unit serial number (VPD 0x80). It must survive
// restarts, or ESXi and multipath see a new disk.
type Identity struct {
	NAA    string `json:"naa"`    // 32 hex digits, NAA 6
	Serial string `json:"serial"` // VPD 0x80
	// SizeBytes is the last size seen, so that a LUN whose backend is
	// unreachable at start can still be presented (answering BUSY) with
	// its real capacity.
	SizeBytes int64 `json:"size_bytes,omitempty"`
}

// naaCompanyID is the 24-bit company ID in generated NAA 6 designators. Its
// first octet has the X (local) bit set and the M bit clear, the IEEE CID
// form, which IEEE never assigns as an OUI, so generated designators cannot
// collide with a vendor's; the 100 bits after it are random.
const naaCompanyID = 0x4a4c57

// NAABytes decodes the 32-hex-digit form.
func (id Identity) NAABytes() ([16]byte, error) {
	var b [16]byte
	s := strings.TrimPrefix(strings.ToLower(id.NAA), "0x")
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 16 {
		return b, fmt.Errorf("naa %q: not 32 hex digits", id.NAA)
	}
	copy(b[:], raw)
	if b[0]>>4 != 6 {
		return b, fmt.Errorf("naa %q: not an NAA 6 (IEEE Registered Extended) designator", id.NAA)
	}
	return b, nil
}

func newIdentity() (Identity, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Identity{}, err
	}
	// NAA 6: 4 bits NAA, 24 bits company ID, 36 bits vendor specific,
	// 64 bits vendor specific extension.
	cid := uint32(naaCompanyID)
	b[0] = 0x60 | byte(cid>>20)
	b[1] = byte(cid >> 12)
	b[2] = byte(cid >> 4)
	b[3] = byte(cid<<4) | b[3]&0x0f
	naa := hex.EncodeToString(b[:])
	return Identity{NAA: naa, Serial: naa[16:]}, nil
}

// identityStore keeps identities in DATA_DIR/identity.json, keyed by the
// backing (file path, store and volume, pool and image), so that a LUN keeps
// its identity when it moves to another LUN number or target.
type identityStore struct {
	path string
	mu   struct {
		sync.Mutex
		ids map[string]Identity
	}
}

func openIdentityStore(path string) (*identityStore, error) {
	s := &identityStore{path: path}
	s.mu.ids = map[string]Identity{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &s.mu.ids); err != nil {
		return nil, fmt.Errorf("%s: %w (move it away to generate new identities; hypervisors will see new disks)", path, err)
	}
	return s, nil
}

// get returns the identity for key, creating and saving one when missing.
// Explicit values from the configuration win and are remembered.
func (s *identityStore) get(key string, lun *config.LUN) (Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.mu.ids[key]
	if !ok {
		var err error
		if id, err = newIdentity(); err != nil {
			return Identity{}, err
		}
	}
	changed := !ok
	if lun.NAA != "" && !strings.EqualFold(strings.TrimPrefix(lun.NAA, "0x"), id.NAA) {
		id.NAA, changed = strings.ToLower(strings.TrimPrefix(lun.NAA, "0x")), true
	}
	if lun.Serial != "" && lun.Serial != id.Serial {
		id.Serial, changed = lun.Serial, true
	}
	if _, err := id.NAABytes(); err != nil {
		return Identity{}, err
	}
	if changed {
		s.mu.ids[key] = id
		if err := s.saveLocked(); err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

// setSize records the last size seen for key.
func (s *identityStore) setSize(key string, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.mu.ids[key]
	if !ok || id.SizeBytes == size {
		return nil
	}
	id.SizeBytes = size
	s.mu.ids[key] = id
	return s.saveLocked()
}

func (s *identityStore) lookup(key string) (Identity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.mu.ids[key]
	return id, ok
}

func (s *identityStore) saveLocked() error {
	data, err := json.MarshalIndent(s.mu.ids, "", "  ")
	if err != nil {
		return err
	}
	return config.WriteFileAtomic(s.path, append(data, '\n'), 0o600)
}
