//go:build !linux

package sshtest

import (
	"errors"
	"os"
)

// errNoPTY is returned for pty sessions on systems without /dev/ptmx support.
// TODO: implement posix_openpt for the BSDs and macOS when a user needs it.
var errNoPTY = errors.New("sshtest: pty sessions are only supported on linux")

func openPTY() (ptmx, tty *os.File, err error) { return nil, nil, errNoPTY }

func setWinsize(*os.File, uint32, uint32) error { return errNoPTY }
