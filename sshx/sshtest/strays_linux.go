package sshtest

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// markerVar names the environment variable that tags every process a
// Server starts, detached ones included.
const markerVar = "SSHTEST_SERVER"

// killMarked sends SIGKILL to every process whose environment holds
// markerVar=marker. Processes it cannot read are someone else's and skipped.
func killMarked(marker string) {
	want := []byte(markerVar + "=" + marker)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for v := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(v, want) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}
