//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal reports whether f is a character device, an approximation of
// a terminal on systems without the Linux ioctls.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// makeRaw is not supported here; the shell then runs in cooked mode.
// TODO: use TIOCGETA on the BSDs and macOS when someone needs them.
func makeRaw(*os.File) (func(), error) {
	return nil, errors.New("raw terminal mode is only supported on linux")
}

// termSize is unknown here.
func termSize(*os.File) (rows, cols int) { return 0, 0 }
