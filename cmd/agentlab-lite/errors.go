package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/agentlab-sdk/agentlab"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnreachable = 255 // ssh and exec: the command could not be run, as OpenSSH
	exitInterrupted = 130
)

// cliError is an error the CLI prints as "error:", "next:" and "hint:"
// lines and turns into an exit code.
type cliError struct {
	msg   string
	next  string
	hints []string
	code  int
	cause error
}

// Error implements error.
func (e *cliError) Error() string { return e.msg }

// Unwrap returns the SDK error behind the message, if any.
func (e *cliError) Unwrap() error { return e.cause }

// usagef reports a malformed command line (exit 2); next is the help to
// read.
func usagef(next, format string, args ...any) *cliError {
	return &cliError{msg: fmt.Sprintf(format, args...), next: next, code: exitUsage}
}

// failf reports a failure (exit 1).
func failf(next, format string, args ...any) *cliError {
	return &cliError{msg: fmt.Sprintf(format, args...), next: next, code: exitFailure}
}

// exitCodeError ends the CLI with a code and no message (the command
// already reported, as ssh does with the remote exit status).
type exitCodeError struct{ code int }

// Error implements error.
func (e exitCodeError) Error() string { return "exit status " + strconv.Itoa(e.code) }

// report prints err in the error/next/hint form and returns the exit code.
func report(w io.Writer, err error) int {
	var ec exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	var ce *cliError
	if !errors.As(err, &ce) {
		ce = explain(err, "")
	}
	fmt.Fprintf(w, "error: %s\n", oneLine(ce.msg))
	if ce.next != "" {
		fmt.Fprintf(w, "next: %s\n", ce.next)
	}
	for _, h := range ce.hints {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
	return ce.code
}

// oneLine folds a multi-line message onto one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", " | ")
}

// explain turns an SDK error into a CLI error with the next step to take.
// next is the default help to point at.
func explain(err error, next string) *cliError {
	ce := &cliError{msg: sdkText(err), next: next, code: exitFailure, cause: err}
	var ise *agentlab.InvalidStateError
	var cfgErr *configError
	var missing *missingConfigError
	switch {
	case errors.As(err, &missing):
		ce.msg = missing.Error()
		ce.next = "agentlab-lite help config"
		ce.hints = []string{"pass --config FILE or set AGENTLAB_CONFIG",
			"to try the simulator: agentlab-lite sim serve --dir DIR, then " +
				"export AGENTLAB_CONFIG=DIR/config.yaml"}
	case errors.As(err, &cfgErr):
		ce.next = "agentlab-lite help config"
	case errors.Is(err, context.Canceled):
		ce.msg, ce.code, ce.next = "interrupted", exitInterrupted, ""
	case errors.As(err, &ise):
		ce.msg, ce.next = ise.Error(), stateNext(ise)
	case errors.Is(err, agentlab.ErrVMIDConflict):
		ce.hints = []string{"omit --vmid to pick a free VMID"}
		ce.next = "agentlab-lite sandbox list"
	case errors.Is(err, agentlab.ErrInvalidArgument):
		ce.code = exitUsage
	case errors.Is(err, agentlab.ErrHostKeyMismatch):
		ce.hints = []string{"the guest's SSH host key changed; destroy and recreate " +
			"the sandbox, or check for an address clash"}
	case errors.Is(err, agentlab.ErrUnreachable):
		ce.hints = []string{"check ssh.jump in the config (the guest network may " +
			"only be reachable through the Proxmox node)"}
	case errors.Is(err, agentlab.ErrBusy):
		ce.hints = []string{"another operation holds the sandbox or the node; retry " +
			"in a moment"}
	}
	return ce
}

// stateNext is the command that gets a sandbox out of a state that
// refused an operation: start a STOPPED one, resume a SUSPENDED one, when
// the operation is valid in RUNNING or READY; else "sandbox show".
func stateNext(ise *agentlab.InvalidStateError) string {
	fix := map[agentlab.State]string{agentlab.StateStopped: "start",
		agentlab.StateSuspended: "resume"}[ise.State]
	if fix != "" && (slices.Contains(ise.Valid, agentlab.StateRunning) ||
		slices.Contains(ise.Valid, agentlab.StateReady)) {
		return fmt.Sprintf("agentlab-lite sandbox %s %d", fix, ise.VMID)
	}
	return fmt.Sprintf("agentlab-lite sandbox show %d", ise.VMID)
}

// sdkText shortens the SDK's sentinel prefixes ("agentlab: not found") so
// that messages read as sentences.
func sdkText(err error) string {
	s := err.Error()
	for _, p := range []string{"agentlab: invalid argument: ", "agentlab: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// notFoundSandbox reports an unknown VMID with the closest existing ones.
func notFoundSandbox(vmid int, known []int) *cliError {
	ce := failf("agentlab-lite sandbox list", "sandbox %d not found", vmid)
	if c := closest(vmid, known, 3); len(c) > 0 {
		ce.hints = []string{"closest VMIDs: " + joinInts(c)}
	}
	return ce
}

// closest returns up to n of known nearest to v, nearest first.
func closest(v int, known []int, n int) []int {
	ids := slices.Clone(known)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	sort.SliceStable(ids, func(i, j int) bool {
		di, dj := abs(ids[i]-v), abs(ids[j]-v)
		if di != dj {
			return di < dj
		}
		return ids[i] > ids[j]
	})
	return ids[:min(n, len(ids))]
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// suggest returns the candidate closest to word when it is close enough (a
// typo: one edit or transposition per three letters), or one that word is a
// prefix of.
func suggest(word string, candidates []string) string {
	best, bestD := "", max(1, len(word)/3)+1
	for _, c := range candidates {
		if strings.HasPrefix(c, word) && word != "" {
			return c
		}
		if d := editDistance(word, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent letters.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
