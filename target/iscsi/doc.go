// Package iscsi is Lunway's iSCSI target (RFC 7143): it accepts TCP
// connections, runs login (security, operational and full feature phases),
// discovery and normal sessions, and carries SCSI commands between the
// initiator and a scsi.Target through the contract in target/scsi.
//
// A Server has a net/http-like lifecycle: Serve or ServePortalGroup per
// listener, Shutdown to drain and log sessions out, Close to drop
// everything. Targets are added and removed live with AddTarget and
// RemoveTarget.
//
// Security: a target (and discovery, through Options.DiscoveryAuth) may
// require CHAP in the login security stage, one-way or mutual, with MD5
// (CHAP_A=5) or SHA-256 (CHAP_A=7); secrets are Secret values that never
// print. ACLs limit logins by initiator name and source network; a denied
// login gets status 0x0202 and SendTargets lists only the targets the
// initiator may log into. Failed logins are delayed per source address.
//
// Each connection has one reader goroutine, which decodes PDUs and admits
// commands in CmdSN order (scsi.Target.Begin), one writer goroutine, which
// coalesces queued responses into writev batches and stamps StatSN,
// ExpCmdSN and MaxCmdSN as they leave, and one goroutine per executing
// command. Only ErrorRecoveryLevel 0 and one connection per session are
// supported.
package iscsi
