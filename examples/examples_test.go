// Package examples_test builds and runs every example program, so that
// none of them can rot.
package examples_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestExamplesRun(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not on PATH")
	}
	tests := []struct {
		dir  string
		args []string
		want []string
	}{
		{"quickstart", nil, []string{"is RUNNING at 10.77.", "event 1 sandbox.state",
			"after restore the marker reads ORIGINAL", "is DESTROYED"}},
		{"jobrunner", nil, []string{"| working on: find the answer", "ended COMPLETED (exit 0)",
			"artifact answer.txt (3 bytes): 42", "after the job: DESTROYED"}},
		{"eventwatcher", []string{"-after", "10"}, []string{"the subscriber received event 1",
			"catching up from the store after event 1:", "sandbox.destroy.completed",
			"replaying after 10 again:\n  11 "}},
	}
	bin := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			exe := filepath.Join(bin, tt.dir)
			build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./"+tt.dir)
			out, err := build.CombinedOutput()
			require.NoError(t, err, "go build ./%s: %s", tt.dir, out)
			out, err = exec.CommandContext(ctx, exe, tt.args...).CombinedOutput()
			require.NoError(t, err, "%s: %s", tt.dir, out)
			for _, w := range tt.want {
				require.Contains(t, string(out), w)
			}
		})
	}
}
