package agentlab

import (
	"context"
	"io"
	"time"
)

// Endpoint says how to reach one sandbox's guest over SSH. The Manager builds
// it from the sandbox record; a [Guest] implementation only reads it.
type Endpoint struct {
	// VMID identifies the sandbox; pooled connections are keyed by it.
	VMID int

	// Host is the guest's IP address or host name.
	Host string

	// Port is the guest's SSH port; zero means 22.
	Port int

	// User is the login user inside the guest.
	User string

	// HostKey is the pinned host public key in authorized_keys format. Empty
	// means no key is pinned yet: the first key seen is accepted only when
	// TrustOnFirstUse is set, and it is then handed to LearnHostKey.
	HostKey string

	// TrustOnFirstUse allows accepting an unpinned host key.
	TrustOnFirstUse bool

	// LearnHostKey, when not nil, is called with the key accepted on first
	// use so that the caller can pin it. An error from it refuses the key.
	LearnHostKey func(key string) error
}

// ExecRequest describes one command to run in a guest. Exactly one of Argv
// and Shell is set.
type ExecRequest struct {
	// Argv is the program and its arguments; each is quoted for the guest's
	// shell so that it arrives as one argument.
	Argv []string

	// Shell is a command line handed to the guest's shell as is, the way
	// OpenSSH does with the arguments after the host name.
	Shell string

	// Stdin, when not nil, is copied to the command's standard input.
	Stdin io.Reader

	// Env holds extra environment variables for the command.
	Env map[string]string

	// Dir is the working directory; empty means the login directory.
	Dir string

	// Stdout and Stderr, when not nil, receive the output as it arrives, in
	// addition to the bounded copy kept in the result.
	Stdout, Stderr io.Writer

	// MaxOutput bounds the bytes of each stream kept in the result. Zero means
	// 1 MiB; a negative value keeps nothing.
	MaxOutput int
}

// ExecResult is the outcome of a command that ran. A non-zero exit code is
// data, not an error.
type ExecResult struct {
	// ExitCode is the command's exit status; -1 when it died from a signal.
	ExitCode int

	// Signal names the signal that ended the command ("KILL"), if any.
	Signal string

	// Stdout and Stderr hold up to MaxOutput bytes of each stream.
	Stdout, Stderr []byte

	// StdoutTruncated and StderrTruncated report that output was dropped
	// past the bound.
	StdoutTruncated, StderrTruncated bool

	// Started is when the command was started; Duration how long it ran.
	Started  time.Time
	Duration time.Duration
}

// TransferOptions tunes a file transfer. A nil *TransferOptions means the
// defaults.
type TransferOptions struct {
	// Progress, when not nil, is called as bytes move, with the path of the
	// file being copied, the bytes done for it and its size.
	Progress func(path string, done, total int64)
}

// Guest is the data plane to running sandboxes: commands and files. The
// sshx package implements it over SSH and SFTP; agentlabtest has a scripted
// fake. Implementations must be safe for concurrent use.
//
// Exec returns an error only when the command could not be run or its
// outcome is unknown (transport failure, timeout, cancellation); a host key
// that differs from the pinned one yields an error matching
// [ErrHostKeyMismatch].
type Guest interface {
	// Exec runs one command and waits for it. Cancelling ctx signals the
	// remote process and closes its session.
	Exec(ctx context.Context, ep Endpoint, req ExecRequest) (ExecResult, error)

	// Upload copies a local file or directory tree to remotePath.
	Upload(ctx context.Context, ep Endpoint, localPath, remotePath string,
		opts *TransferOptions) error

	// Download copies a remote file or directory tree to localPath. Names
	// that would land outside localPath are refused.
	Download(ctx context.Context, ep Endpoint, remotePath, localPath string,
		opts *TransferOptions) error

	// WaitReady returns once a connection is established and a trivial
	// command succeeds, retrying with backoff until ctx ends.
	WaitReady(ctx context.Context, ep Endpoint) error

	// Drop closes any pooled connection to the sandbox vmid. It is called
	// when the sandbox stops, pauses or is destroyed.
	Drop(vmid int)

	// Close closes all connections. The Manager does not close a Guest it
	// was given; whoever built it does.
	Close() error
}
