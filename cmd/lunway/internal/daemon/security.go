package daemon

import (
	"fmt"
	"os"
	"strings"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// chapConfig resolves a CHAP section: secrets inline or from files that
// only their owner may read.
func chapConfig(c *config.CHAP, field string) (*iscsi.CHAPConfig, error) {
	secret, err := readSecret(c.Secret, c.SecretFile, field+".secret_file")
	if err != nil {
		return nil, err
	}
	out := &iscsi.CHAPConfig{User: c.User, Secret: iscsi.Secret(secret), MutualUser: c.MutualUser}
	if c.MutualUser != "" {
		ms, err := readSecret(c.MutualSecret, c.MutualSecretFile, field+".mutual_secret_file")
		if err != nil {
			return nil, err
		}
		out.MutualSecret = iscsi.Secret(ms)
	}
	return out, nil
}

// readSecret returns the inline value, or the content of path (one line,
// trailing newline removed), refusing files readable by group or others.
func readSecret(inline, path, field string) (string, error) {
	if path == "" {
		return inline, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", &config.FieldError{Field: field, Msg: err.Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", &config.FieldError{Field: field, Msg: err.Error()}
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", &config.FieldError{Field: field,
			Msg: fmt.Sprintf("%s is readable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())}
	}
	buf := make([]byte, 1024)
	n, _ := f.Read(buf)
	s := strings.TrimRight(string(buf[:n]), "\r\n")
	if s == "" || strings.ContainsAny(s, "\n\x00") {
		return "", &config.FieldError{Field: field, Msg: fmt.Sprintf("%s must hold the secret on one line", path)}
	}
	return s, nil
}

var aluaStates = map[string]scsi.ALUAState{
	"active-optimized":    scsi.ALUAActiveOptimized,
	"active-nonoptimized": scsi.ALUAActiveNonOptimized,
	"standby":             scsi.ALUAStandby,
	"unavailable":         scsi.ALUAUnavailable,
	"transitioning":       scsi.ALUATransitioning,
}

// portGroup is the ALUA target port group of a portal group: the iSCSI
// layer gives a nexus the relative port and group ID of its portal group
// tag, so each portal group is one port and one group.
func portGroup(pg config.Portal, field string) (scsi.PortGroup, error) {
	st, ok := aluaStates[pg.ALUAState]
	if !ok {
		return scsi.PortGroup{}, &config.FieldError{Field: field + ".alua_state", Msg: "unknown state " + pg.ALUAState}
	}
	return scsi.PortGroup{ID: pg.Tag, State: st, Ports: []uint16{pg.Tag}}, nil
}
