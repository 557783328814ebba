package sshx_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
)

func TestProcess_StartWaitOutput(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 20*time.Second)
	id, err := e.tr.Start(ctx, e.ep, agentlab.ExecRequest{
		Shell: `echo "out $GREETING"; echo err >&2; exit 4`,
		Env:   map[string]string{"GREETING": "hi there"},
	})
	require.NoError(t, err)
	st, err := e.tr.Wait(ctx, e.ep, id)
	require.NoError(t, err)
	require.Equal(t, sshx.ProcState{ID: id, ExitCode: 4}, st)

	var out, errOut bytes.Buffer
	n, err := e.tr.ReadOutput(ctx, e.ep, id, sshx.Stdout, 0, &out)
	require.NoError(t, err)
	require.Equal(t, int64(len("out hi there\n")), n)
	require.Equal(t, "out hi there\n", out.String())
	_, err = e.tr.ReadOutput(ctx, e.ep, id, sshx.Stderr, 0, &errOut)
	require.NoError(t, err)
	require.Equal(t, "err\n", errOut.String())
	out.Reset()
	_, err = e.tr.ReadOutput(ctx, e.ep, id, sshx.Stdout, 4, &out)
	require.NoError(t, err)
	require.Equal(t, "hi there\n", out.String())
}

// TestProcess_ReattachAndSignal starts a process, loses the connection and
// the Transport, and controls it from a new Transport by ID.
func TestProcess_ReattachAndSignal(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 20*time.Second)
	pidFile := filepath.Join(e.srv.Dir(), "bg.pid")
	id, err := e.tr.Start(ctx, e.ep, agentlab.ExecRequest{
		Argv: []string{"sh", "-c", "echo $$ > " + pidFile + "; sleep 60 & wait"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.tr.Signal(ctxTimeout(t, 5*time.Second), e.ep, id, "KILL") })
	st, err := e.tr.Status(ctx, e.ep, id)
	require.NoError(t, err)
	require.True(t, st.Running)

	e.srv.CloseConns()
	require.NoError(t, e.tr.Close())
	tr2 := sshx.New(sshx.Config{Signer: e.key})
	t.Cleanup(func() { tr2.Close() })
	st, err = tr2.Status(ctx, e.ep, id)
	require.NoError(t, err)
	require.True(t, st.Running, "process survived the connection")

	waitFile(pidFile) // the command is past its first line
	require.NoError(t, tr2.Signal(ctx, e.ep, id, "TERM"))
	st, err = tr2.Wait(ctx, e.ep, id)
	require.NoError(t, err)
	require.Equal(t, 128+15, st.ExitCode)
	requireDead(t, pidFile)
}

func TestProcess_WaitEndsOnContext(t *testing.T) {
	e := newEnv(t, nil)
	id, err := e.tr.Start(ctxTimeout(t, 10*time.Second), e.ep, agentlab.ExecRequest{Argv: []string{"sleep", "60"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.tr.Signal(ctxTimeout(t, 5*time.Second), e.ep, id, "KILL") })
	st, err := e.tr.Wait(ctxTimeout(t, 300*time.Millisecond), e.ep, id)
	require.ErrorIs(t, err, agentlab.ErrTimeout)
	require.True(t, st.Running)
}

func TestProcess_Lost(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	id, err := e.tr.Start(ctx, e.ep, agentlab.ExecRequest{Argv: []string{"sleep", "60"}})
	require.NoError(t, err)
	// Kill the wrapper and the command together, as a reboot would.
	_, err = e.tr.Exec(ctx, e.ep, agentlab.ExecRequest{
		Shell: `D=.agentlab/proc/` + id + `; kill -KILL $(cat $D/wpid) $(cat $D/pid)`})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := e.tr.Status(ctx, e.ep, id)
		return err != nil
	}, 5*time.Second, 20*time.Millisecond)
	_, err = e.tr.Wait(ctx, e.ep, id)
	require.ErrorIs(t, err, sshx.ErrProcessLost)
}

func TestProcess_BadIDs(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	tests := []struct {
		name string
		id   string
		want error
	}{
		{"unknown", "0123456789abcdef", agentlab.ErrNotFound},
		{"injection", "x; rm -rf ~", agentlab.ErrInvalidArgument},
		{"traversal", "../../etc", agentlab.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.tr.Status(ctx, e.ep, tt.id)
			require.ErrorIs(t, err, tt.want)
			require.ErrorIs(t, e.tr.Signal(ctx, e.ep, tt.id, "TERM"), tt.want)
		})
	}
	require.ErrorIs(t, e.tr.Signal(ctx, e.ep, "0123456789abcdef", "TERM; reboot"),
		agentlab.ErrInvalidArgument)
	_, err := os.Stat(filepath.Join(e.srv.Dir(), ".agentlab"))
	require.True(t, os.IsNotExist(err), "nothing created for bad IDs")
}
