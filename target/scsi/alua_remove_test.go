package scsi

import (
	"errors"
	"testing"
)

func TestALUARemoveGroup(t *testing.T) {
	a, err := NewALUA(true,
		PortGroup{ID: 1, State: ALUAActiveOptimized, Ports: []uint16{1}},
		PortGroup{ID: 2, State: ALUAStandby, Ports: []uint16{2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveGroup(2); err != nil {
		t.Fatal(err)
	}
	if g := a.Groups(); len(g) != 1 || g[0].ID != 1 {
		t.Fatalf("groups after removal: %+v", g)
	}
	if err := a.RemoveGroup(2); !errors.Is(err, ErrNoSuchGroup) {
		t.Fatalf("second removal: %v", err)
	}
	// The port is free again: a new group may take it.
	if err := a.SetGroup(PortGroup{ID: 3, State: ALUAActiveNonOptimized, Ports: []uint16{2}}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetState(2, ALUAStandby); !errors.Is(err, ErrNoSuchGroup) {
		t.Fatalf("SetState on a removed group: %v", err)
	}
}
