package iscsi_test

import "fmt"

func fmtV(a any) string     { return fmt.Sprintf("%v", a) }
func fmtPlusV(a any) string { return fmt.Sprintf("%+v", a) }
func fmtSharpV(a any) string {
	return fmt.Sprintf("%#v", a)
}
