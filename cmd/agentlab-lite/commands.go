package main

import (
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// commands is the command tree, in help order. It is set in init because
// the help command refers back to it.
var commands []command

func init() { commands = commandTable() }

func commandTable() []command {
	return []command{
		{path: "status", summary: "count sandboxes and jobs, show recent failures", run: cmdStatus},
		{path: "profile list", summary: "list the profiles", run: cmdProfileList},
		{path: "profile validate", synopsis: "[FILE|DIR...]",
			summary: "check profile files (default: the profiles directory)", run: cmdProfileValidate},
		{path: "sandbox new", synopsis: "--profile P [--name N] [--vmid ID] [--ttl T] " +
			"[--keepalive] [--label k=v] [--no-wait]", summary: "create a sandbox", run: cmdSandboxNew},
		{path: "sandbox list", synopsis: "[--live] [--state S] [--profile P]",
			summary: "list sandboxes, newest VMID first", run: cmdSandboxList},
		{path: "sandbox show", synopsis: "VMID", summary: "show one sandbox", run: cmdSandboxShow},
		{path: "sandbox pause", synopsis: "VMID", summary: "suspend a sandbox (memory kept)",
			run: lifecycle("pause")},
		{path: "sandbox resume", synopsis: "VMID", summary: "resume a suspended sandbox",
			run: lifecycle("resume")},
		{path: "sandbox stop", synopsis: "VMID", summary: "shut a sandbox down",
			run: lifecycle("stop")},
		{path: "sandbox start", synopsis: "VMID", summary: "start a stopped sandbox",
			run: lifecycle("start")},
		{path: "sandbox destroy", synopsis: "VMID [--force]",
			summary: "destroy a sandbox and its VM", run: cmdSandboxDestroy},
		{path: "sandbox revert", synopsis: "VMID [--force] [--stopped]",
			summary: "restore the \"clean\" snapshot taken at first boot", run: cmdSandboxRevert},
		{path: "sandbox lease renew", synopsis: "VMID --ttl T",
			summary: "move a sandbox's lease expiry to TTL from now", run: cmdLeaseRenew},
		{path: "sandbox snapshot save", synopsis: "VMID NAME [--memory] [--force]",
			summary: "take a snapshot", run: cmdSnapshotSave},
		{path: "sandbox snapshot list", synopsis: "VMID", summary: "list snapshots",
			run: cmdSnapshotList},
		{path: "sandbox snapshot restore", synopsis: "VMID NAME [--force] [--stopped]",
			summary: "roll back to a snapshot", run: cmdSnapshotRestore},
		{path: "sandbox snapshot delete", synopsis: "VMID NAME [--force]",
			summary: "delete a snapshot", run: cmdSnapshotDelete},
		{path: "ssh", synopsis: "VMID [--wait] [--exec] [--print] [-- COMMAND...]",
			summary: "run a command (joined like OpenSSH) or an interactive shell", run: cmdSSH},
		{path: "exec", synopsis: "VMID [--env K=V] [--dir D] -- PROGRAM [ARG...]",
			summary: "run a program with exact arguments (no shell parsing)", run: cmdExec},
		{path: "cp", synopsis: "SRC DST", summary: "copy files: LOCAL VMID:/path or " +
			"VMID:/path LOCAL", run: cmdCopy},
		{path: "logs", synopsis: "VMID [--tail N] [--follow]",
			summary: "print a sandbox's event log", run: cmdLogs},
		{path: "job run", synopsis: "--profile P --task T [--repo URL] [--ref R] [--ttl T] " +
			"[--keepalive] [--wait]", summary: "run a job in a fresh sandbox", run: cmdJobRun},
		{path: "job show", synopsis: "JOB", summary: "show a job", run: cmdJobShow},
		{path: "job list", synopsis: "[--status S] [--limit N]", summary: "list jobs, newest first",
			run: cmdJobList},
		{path: "job logs", synopsis: "JOB [--tail N] [--follow]", summary: "print a job's log",
			run: cmdJobLogs},
		{path: "job cancel", synopsis: "JOB", summary: "cancel a job", run: cmdJobCancel},
		{path: "job artifacts", synopsis: "JOB", summary: "list a job's downloaded artifacts",
			run: cmdJobArtifacts},
		{path: "job supervise", summary: "internal: run a job or creation detached",
			run: cmdSupervise, hidden: true},
		{path: "reconcile", synopsis: "[--apply] [--watch]",
			summary: "compare the store with Proxmox (and fix it with --apply)", run: cmdReconcile},
		{path: "sim serve", synopsis: "--dir DIR [--task-delay D] [--fault SPEC...]",
			summary: "run the Proxmox VE simulator in the foreground", run: cmdSimServe},
		{path: "demo", synopsis: "[--keep DIR]",
			summary: "run the whole story on an embedded simulator", run: cmdDemo},
		{path: "completion", synopsis: "bash|zsh", summary: "print a shell completion script",
			run: cmdCompletion},
		{path: "version", summary: "print the version", run: cmdVersion},
		{path: "help", synopsis: "[COMMAND|config]", summary: "show help", run: cmdHelp},
	}
}

// versionLine describes the build: version, commit and commit date.
func versionLine() string {
	version, commit, date := "(devel)", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(7, len(s.Value))]
			case "vcs.time":
				date = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					version += "-dirty"
				}
			}
		}
	}
	return fmt.Sprintf("version=%s commit=%s date=%s", version, commit, date)
}

// maxTTL is the longest lease a command line may ask for, as long as a
// profile's ttl_minutes_default may be; "never" is the way to ask for more.
const maxTTL = 365 * 24 * time.Hour

var (
	errTTLSyntax  = errors.New("want minutes (120), a duration (45m, 2h) or never")
	errTTLShort   = errors.New("the lease must be at least one minute")
	errTTLTooLong = errors.New("the lease may be at most one year (525600 minutes); " +
		"use never for no expiry")
	// durationRE matches what time.ParseDuration accepts, so that a
	// well-formed duration it refuses is known to be out of range.
	durationRE = regexp.MustCompile(`^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)
)

// parseTTL reads a lease: minutes as a bare number ("120"), a Go duration
// ("45m", "2h"), or "never" (also "none"). An accepted lease is between one
// minute and maxTTL, or -1 for never; the error says what is wrong.
func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "never" || s == "none" {
		return -1, nil
	}
	negative := strings.HasPrefix(s, "-")
	var d time.Duration
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > int64(maxTTL/time.Minute) {
			return 0, errTTLTooLong
		}
		d = time.Duration(n) * time.Minute
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, ttlRangeErr(negative)
	} else if d, err = time.ParseDuration(s); err != nil {
		if durationRE.MatchString(s) {
			return 0, ttlRangeErr(negative)
		}
		return 0, errTTLSyntax
	}
	switch {
	case d < time.Minute:
		return 0, errTTLShort
	case d > maxTTL:
		return 0, errTTLTooLong
	}
	return d, nil
}

// ttlRangeErr is the error for a number too large to represent.
func ttlRangeErr(negative bool) error {
	if negative {
		return errTTLShort
	}
	return errTTLTooLong
}

// ttlFlag is a --ttl flag value.
type ttlFlag struct {
	d   time.Duration
	set bool
}

// String implements flag.Value.
func (f *ttlFlag) String() string {
	if !f.set {
		return ""
	}
	return f.d.String()
}

// Set implements flag.Value; it parses one occurrence of the flag.
func (f *ttlFlag) Set(s string) error {
	d, err := parseTTL(s)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

// pairsFlag collects repeated k=v flags.
type pairsFlag map[string]string

// String implements flag.Value.
func (p pairsFlag) String() string { return labelString(p) }

// Set implements flag.Value; it parses one occurrence of the flag.
func (p pairsFlag) Set(s string) error {
	k, v, err := splitPair(s)
	if err != nil {
		return err
	}
	p[k] = v
	return nil
}

// listFlag collects repeated string flags.
type listFlag []string

// String implements flag.Value.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value; it parses one occurrence of the flag.
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// optBool is a boolean flag that remembers whether it was given.
type optBool struct {
	v, set bool
}

// String implements flag.Value.
func (b *optBool) String() string { return strconv.FormatBool(b.v) }

// Set implements flag.Value; it parses one occurrence of the flag.
func (b *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.v, b.set = v, true
	return nil
}

// IsBoolFlag lets the flag be given without a value.
func (b *optBool) IsBoolFlag() bool { return true }

func (b *optBool) ptr() *bool {
	if !b.set {
		return nil
	}
	return &b.v
}
