package iscsi_test

import (
	"context"
	"log"
	"net"
	"time"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// Serving one target with one LUN, then shutting down.
func ExampleServer() {
	srv, err := iscsi.NewServer(&iscsi.Options{QueueDepth: 128})
	if err != nil {
		log.Fatal(err)
	}
	dev, _ := mem.New(1<<30, nil)
	lu, _ := scsi.NewLU(scsi.LUOptions{Device: dev, SerialNumber: "DISK0001"})
	st := scsi.NewTarget("iqn.2026-01.io.lunway:disk1", nil)
	st.AddLU(0, lu)
	err = srv.AddTarget(iscsi.TargetConfig{
		Name:              "iqn.2026-01.io.lunway:disk1",
		Alias:             "disk1",
		SCSI:              st,
		CHAP:              &iscsi.CHAPConfig{User: "host1", Secret: "a-long-chap-secret"},
		AllowedInitiators: []string{"iqn.2026-01.com.example:host1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln) // returns iscsi.ErrServerClosed after Shutdown

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Print(err)
	}
	// Output:
}
