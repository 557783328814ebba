package proxmox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// class is how an error from PVE or the transport is handled.
type class int

const (
	classOther     class = iota // permanent or unknown: returned as is
	classCtx                    // the caller's context ended
	classNotFound               // the VM (or snapshot) does not exist
	classConflict               // the VMID is taken
	classExists                 // some other name is taken
	classBusy                   // a lock is held or timed out
	classNotReady               // the guest agent does not answer yet
	classTransient              // transport error, 502/503/504, 595/596/599
)

var (
	// reVMIDTaken matches PVE's texts for a VMID in use.
	reVMIDTaken = regexp.MustCompile(`(?i)\bVM \d+ already exists|config file already exists`)
	// reNotFound matches PVE's texts for a VM or snapshot that does not
	// exist, and nothing else: a missing storage, node, task or security
	// group must never read as a VM that is gone.
	reNotFound = regexp.MustCompile(`(?i)configuration file '[^']*' does not exist|` +
		`unable to find configuration file for vm|\bvm \d+ does not exist|` +
		`\bno such (vm|snapshot)\b|\bsnapshot '[^']*' does not exists?`)
	reBusy = regexp.MustCompile(`(?i)VM is locked|can't lock file|got timeout|` +
		`got no worker upid|no quorum`)
	reNotReady = regexp.MustCompile(`(?i)guest agent is not running|` +
		`qmp command 'guest-[a-z-]+' failed`)
)

// translate maps err to the agentlab vocabulary, prefixed with op and the
// VMID ("start vm 105: agentlab: busy: 500 VM is locked (clone)"). It is the
// single place where PVE texts become sentinels; both the sentinel and the
// original error stay matchable with errors.Is and errors.As.
func translate(err error, op string, vmid int) error {
	if err == nil {
		return nil
	}
	prefix := op
	if vmid > 0 {
		prefix = fmt.Sprintf("%s vm %d", op, vmid)
	}
	sentinel := sentinelOf(classify(err))
	if sentinel == nil || errors.Is(err, sentinel) {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	return fmt.Errorf("%s: %w: %w", prefix, sentinel, err)
}

// sentinelOf names the agentlab sentinel for a class, or nil.
func sentinelOf(c class) error {
	switch c {
	case classNotFound:
		return agentlab.ErrNotFound
	case classConflict:
		return agentlab.ErrVMIDConflict
	case classExists:
		return agentlab.ErrAlreadyExists
	case classBusy, classTransient:
		return agentlab.ErrBusy
	case classNotReady:
		return agentlab.ErrNotReady
	case classOther:
		return agentlab.ErrBackend
	}
	return nil
}

// classify decides how err is handled. Context errors win; then the PVE
// text decides; then the HTTP status or transport failure.
func classify(err error) class {
	switch {
	case err == nil:
		return classOther
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return classCtx
	case errors.Is(err, agentlab.ErrVMIDConflict):
		return classConflict
	case errors.Is(err, agentlab.ErrNotFound):
		return classNotFound
	case errors.Is(err, agentlab.ErrBusy):
		return classBusy
	case errors.Is(err, agentlab.ErrNotReady):
		return classNotReady
	}
	// go-proxmox's IsNotFound is not asked: it also matches a missing
	// storage, node, task or group, which says nothing about the VM.
	if c := classifyText(errorText(err)); c != classOther {
		return c
	}
	if isTransient(err) {
		return classTransient
	}
	return classOther
}

// errorText is the PVE message of err: the API message and parameter errors,
// or a failed task's exit status, or else the error text.
func errorText(err error) string {
	var tfe *px.TaskFailedError
	if errors.As(err, &tfe) {
		return tfe.ExitStatus
	}
	if ae, ok := px.AsAPIError(err); ok {
		parts := []string{ae.Message, ae.Status}
		for _, v := range ae.Errors {
			parts = append(parts, v)
		}
		return strings.Join(parts, "\n")
	}
	return err.Error()
}

// classifyText classifies a PVE message.
func classifyText(msg string) class {
	switch {
	case reNotReady.MatchString(msg):
		return classNotReady
	case reVMIDTaken.MatchString(msg):
		return classConflict
	case strings.Contains(msg, "already exists"), strings.Contains(msg, "already used"):
		return classExists
	case reBusy.MatchString(msg):
		return classBusy
	case reNotFound.MatchString(msg):
		return classNotFound
	}
	return classOther
}

// isTransient reports a failure that may pass on its own: a gateway or
// proxy status, a node PVE cannot reach, or a transport error.
func isTransient(err error) bool {
	if ae, ok := px.AsAPIError(err); ok {
		switch ae.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable,
			http.StatusGatewayTimeout, http.StatusTooManyRequests, 595, 596, 599:
			return true
		}
		return false
	}
	var tfe *px.TaskFailedError
	if errors.As(err, &tfe) || isTLSFailure(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection refused")
}

// isTLSFailure reports a handshake that failed on trust: retrying it cannot
// help.
func isTLSFailure(err error) bool {
	var (
		pe  *pinError
		cve *tls.CertificateVerificationError
		uae x509.UnknownAuthorityError
		hne x509.HostnameError
		cie x509.CertificateInvalidError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
	)
	return errors.As(err, &pe) || errors.As(err, &cve) || errors.As(err, &uae) ||
		errors.As(err, &hne) || errors.As(err, &cie) || errors.As(err, &rhe) ||
		errors.As(err, &ae)
}
