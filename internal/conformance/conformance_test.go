package conformance

import (
	"reflect"
	"testing"
)

const sample = `
     CUnit - A unit testing framework for C - Version 2.1-3

Suite: CompareAndWrite
  Test: Simple ...    [SKIPPED] COMPAREANDWRITE is not implemented.
    [SKIPPED] COMPAREANDWRITE is not implemented.
passed
Suite: GetLBAStatus
  Test: Simple ...passed
  Test: BeyondEol ...    [FAILED] GET_LBA_STATUS successful but should have failed
FAILED
    1. test_get_lba_status_beyond_eol.c:38  - CU_ASSERT_EQUAL(_r,0)
  Test: UnmapSingle ...    [SKIPPED] Logical unit is fully provisioned. Skipping test
passed
Suite: Inquiry
  Test: Standard ...passed
  Test: Crashed ...
Suite: Reserve6
  Test: LUNReset ...passed    [FAILED] PRIN command: failed with sense. UNIT_ATTENTION
Suite: iSCSIdatasn
  Test: iSCSIDataSnInvalid ...    [FAILED] WRITE10 command failed with status 2
    [FAILED] WRITE10 command failed with status 2
passed
Run Summary:    Type  Total    Ran Passed Failed Inactive
`

func TestParse(t *testing.T) {
	got := Parse([]byte(sample))
	want := Results{
		"CompareAndWrite.Simple":         Skip,
		"GetLBAStatus.Simple":            Pass,
		"GetLBAStatus.BeyondEol":         Fail,
		"GetLBAStatus.UnmapSingle":       Skip,
		"Inquiry.Standard":               Pass,
		"Inquiry.Crashed":                Fail,
		"Reserve6.LUNReset":              Pass,
		"iSCSIdatasn.iSCSIDataSnInvalid": Pass,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if r := Regressions(got, []string{"Inquiry.Standard", "GetLBAStatus.BeyondEol", "Nope.X"}); len(r) != 2 {
		t.Fatalf("regressions %v", r)
	}
	if n := NewPasses(got, []string{"Inquiry.Standard", "Reserve6.LUNReset", "iSCSIdatasn.iSCSIDataSnInvalid"}); !reflect.DeepEqual(n, []string{"GetLBAStatus.Simple"}) {
		t.Fatalf("new passes %v", n)
	}
}
