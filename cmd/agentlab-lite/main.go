// Command agentlab-lite is the operator CLI of agentlab: it creates,
// inspects and drives sandboxes and jobs on Proxmox VE, or on the built-in
// simulator, through the SDK. There is no daemon: every invocation opens
// the shared SQLite store, does its work and exits.
//
// # Quick start
//
//	agentlab-lite sim serve --dir /tmp/alsim &       # a simulated Proxmox host
//	export AGENTLAB_CONFIG=/tmp/alsim/config.yaml
//	agentlab-lite sandbox new --profile yolo-ephemeral --ttl 45m
//	agentlab-lite ssh 1000 -- 'echo hello > f; cat f'
//	agentlab-lite sandbox destroy 1000
//
// Or run the whole story in one process: agentlab-lite demo.
//
// # Commands
//
// status, profile list|validate, sandbox new|list|show|pause|resume|stop|
// start|destroy|revert, sandbox lease renew, sandbox snapshot
// save|list|restore|delete, ssh, exec, cp, logs, job run|show|list|logs|
// cancel|artifacts, reconcile, sim serve, demo, completion, version, help.
// Flags may come before or after positional arguments; --json may come
// anywhere and switches every command to stable JSON.
//
// # Output and exit codes
//
// Text output keeps the predecessor's formats: key/value blocks for show,
// tables for lists, "sandbox 1065 paused (state=SUSPENDED)" for operations.
// Errors go to stderr as "error:", "next:" and "hint:" lines. Exit codes:
// 0 success, 1 failure, 2 usage error, 130 interrupted; ssh and exec exit
// with the remote command's status, or 255 when it could not be run.
//
// # Jobs without a daemon
//
// "job run" and "sandbox new --no-wait" hand their work to a detached copy
// of this binary (a supervisor, see supervise.go) and return at once; the
// job proceeds to completion and teardown with no further command. A
// maintenance process ("reconcile --watch", or "sim serve") reaps expired
// leases and takes over jobs whose supervisor died.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
