package sshx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"pgregory.net/rapid"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

func TestExec(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, os.Mkdir(filepath.Join(e.srv.Dir(), "sub dir"), 0o755))
	tests := []struct {
		name      string
		req       agentlab.ExecRequest
		code      int
		out, serr string
	}{
		{name: "argv", req: agentlab.ExecRequest{Argv: []string{"echo", "a b", "it's", "$HOME", ";", "*"}},
			out: "a b it's $HOME ; *\n"},
		{name: "shell", req: agentlab.ExecRequest{Shell: "echo one; echo two"}, out: "one\ntwo\n"},
		{name: "exit code", req: agentlab.ExecRequest{Shell: "exit 42"}, code: 42},
		{name: "stderr", req: agentlab.ExecRequest{Shell: "echo bad >&2; exit 1"}, code: 1, serr: "bad\n"},
		{name: "stdin", req: agentlab.ExecRequest{Argv: []string{"cat"}, Stdin: strings.NewReader("piped in")},
			out: "piped in"},
		{name: "env", req: agentlab.ExecRequest{
			Argv: []string{"sh", "-c", `printf '%s|%s' "$A" "$B_2"`},
			Env:  map[string]string{"A": "x y 'q' $(false)", "B_2": ""}},
			out: "x y 'q' $(false)|"},
		{name: "dir", req: agentlab.ExecRequest{Argv: []string{"sh", "-c", "basename \"$PWD\""},
			Dir: "sub dir"}, out: "sub dir\n"},
		{name: "missing dir", req: agentlab.ExecRequest{Argv: []string{"true"}, Dir: "nope"}, code: 1,
			serr: "nope"},
		{name: "signal", req: agentlab.ExecRequest{Shell: "kill -KILL $$"}, code: -1},
	}
	for via, tr := range e.transports(t) {
		for _, tt := range tests {
			t.Run(via+"/"+tt.name, func(t *testing.T) {
				var streamed, streamedErr syncBuffer
				tt.req.Stdout, tt.req.Stderr = &streamed, &streamedErr
				if tt.req.Stdin != nil {
					tt.req.Stdin = strings.NewReader("piped in")
				}
				res, err := tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, tt.req)
				require.NoError(t, err)
				require.Equal(t, tt.code, res.ExitCode)
				require.Equal(t, tt.out, string(res.Stdout))
				require.Equal(t, tt.out, streamed.String())
				require.Contains(t, string(res.Stderr), tt.serr)
				require.Equal(t, string(res.Stderr), streamedErr.String())
				require.False(t, res.Started.IsZero())
				if tt.code == -1 {
					require.Equal(t, "KILL", res.Signal)
				}
			})
		}
	}
}

func TestExec_InvalidRequest(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		req  agentlab.ExecRequest
	}{
		{"neither", agentlab.ExecRequest{}},
		{"both", agentlab.ExecRequest{Argv: []string{"true"}, Shell: "true"}},
		{"bad env name", agentlab.ExecRequest{Shell: "true", Env: map[string]string{"A;rm": "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.tr.Exec(context.Background(), e.ep, tt.req)
			require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
		})
	}
	require.Zero(t, e.dials.Load(), "invalid requests must not dial")
}

func TestExec_CancelKillsRemote(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		script  string
		timeout bool
	}{
		{"deadline, dies on TERM", "echo $$ > %s; exec sleep 30", true},
		{"cancel, dies on TERM", "echo $$ > %s; exec sleep 30", false},
		{"ignores TERM, needs KILL", "trap '' TERM; echo $$ > %s; sleep 30", true},
	}
	i := 0
	for via, tr := range e.transports(t) {
		for _, tt := range tests {
			i++
			cancelKills(t, e, tr, via+"/"+tt.name, tt.script, tt.timeout, i)
		}
	}
}

// cancelKills runs script through tr until ctx ends (its deadline, or a
// cancel once the script wrote its pid) and checks the remote process died.
func cancelKills(t *testing.T, e *env, tr *sshx.Transport, name, script string,
	timeout bool, i int) {
	t.Run(name, func(t *testing.T) {
		pidFile := filepath.Join(e.srv.Dir(), "pid"+strconv.Itoa(i))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if !timeout {
			go func() {
				waitFile(pidFile)
				cancel()
			}()
		}
		req := agentlab.ExecRequest{Argv: []string{"sh", "-c",
			strings.Replace(script, "%s", pidFile, 1)}}
		_, err := tr.Exec(ctx, e.ep, req)
		if timeout {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, agentlab.ErrTimeout)
		} else {
			require.ErrorIs(t, err, context.Canceled)
		}
		requireDead(t, pidFile)
	})
}

// waitFile polls until path exists (at most a few seconds).
func waitFile(path string) {
	for range 500 {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExec_LargeOutput streams 100 MB through Exec and checks that the
// heap does not grow with it: capture is bounded and SSH windows apply
// back-pressure.
func TestExec_LargeOutput(t *testing.T) {
	e := newEnv(t, nil)
	const total = 100 << 20
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := samplePeakHeap(t)
	var counted atomic.Int64
	res, err := e.tr.Exec(ctxTimeout(t, 60*time.Second), e.ep, agentlab.ExecRequest{
		Shell:  "head -c " + strconv.Itoa(total) + " /dev/zero",
		Stdout: writerFunc(func(p []byte) { counted.Add(int64(len(p))) }),
	})
	require.NoError(t, err)
	growth := int64(peak()) - int64(before.HeapAlloc)
	t.Logf("peak heap growth while streaming %d MiB: %d KiB", total>>20, growth>>10)
	require.Equal(t, int64(total), counted.Load())
	require.Len(t, res.Stdout, 1<<20)
	require.True(t, res.StdoutTruncated)
	require.Less(t, growth, int64(64<<20), "heap grew by %d bytes", growth)
}

// samplePeakHeap samples HeapAlloc until the returned func is called,
// which returns the maximum seen.
func samplePeakHeap(t *testing.T) func() uint64 {
	t.Helper()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	var peak uint64
	get := func() uint64 {
		once.Do(func() { close(stop); peak = <-done })
		return peak
	}
	t.Cleanup(func() { get() })
	return get
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func TestExec_MaxOutput(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name      string
		max       int
		want      string
		truncated bool
	}{
		{"bounded", 4, "0123", true},
		{"fits", 10, "0123456789", false},
		{"none", -1, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, agentlab.ExecRequest{
				Shell: "printf 0123456789; printf 0123456789 >&2", MaxOutput: tt.max})
			require.NoError(t, err)
			require.Equal(t, tt.want, string(res.Stdout))
			require.Equal(t, tt.want, string(res.Stderr))
			require.Equal(t, tt.truncated, res.StdoutTruncated)
			require.Equal(t, tt.truncated, res.StderrTruncated)
		})
	}
}

func TestExec_ConcurrentOnOnePooledConn(t *testing.T) {
	var activity atomic.Int32
	e := newEnv(t, func(c *sshx.Config) { c.OnActivity = func(int) { activity.Add(1) } })
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.tr.Exec(ctxTimeout(t, 30*time.Second), e.ep,
				agentlab.ExecRequest{Argv: []string{"echo", strconv.Itoa(i)}})
			if err == nil && string(res.Stdout) != strconv.Itoa(i)+"\n" {
				err = errors.New("wrong output " + string(res.Stdout))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int32(1), e.dials.Load())
	require.Equal(t, int32(n), activity.Load())
}

func TestExec_ReconnectAfterRestart(t *testing.T) {
	e := newEnv(t, nil)
	run := func() {
		t.Helper()
		res, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, agentlab.ExecRequest{Shell: "echo up"})
		require.NoError(t, err)
		require.Equal(t, "up\n", string(res.Stdout))
	}
	run()
	e.srv.CloseConns() // the guest "rebooted"
	run()
	require.Equal(t, int32(2), e.dials.Load())
	e.tr.Drop(e.ep.VMID)
	run()
	require.Equal(t, int32(3), e.dials.Load())
}

// TestExec_ReconnectAfterServerRestart stops the guest's SSH server
// entirely and starts a new one with the same host key on the same address:
// the pooled connection is replaced on the next call, without a Drop.
func TestExec_ReconnectAfterServerRestart(t *testing.T) {
	hostKey := newSigner(t)
	e := newEnv(t, nil)
	first, err := sshtest.NewServer(sshtest.Config{HostKey: hostKey,
		AuthorizedKeys: []ssh.PublicKey{e.key.PublicKey()}})
	require.NoError(t, err)
	addr, err := first.Listen("127.0.0.1:0")
	require.NoError(t, err)
	ep := e.ep
	ep.VMID, ep.Port = 2, addr.(*net.TCPAddr).Port
	ep.HostKey = sshx.FormatKey(hostKey.PublicKey())
	echo := func(word string) error {
		res, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep,
			agentlab.ExecRequest{Argv: []string{"echo", word}})
		if err == nil && string(res.Stdout) != word+"\n" {
			err = errors.New("wrong output " + string(res.Stdout))
		}
		return err
	}
	require.NoError(t, echo("before"))
	require.NoError(t, first.Close())

	second, err := sshtest.NewServer(sshtest.Config{HostKey: hostKey,
		AuthorizedKeys: []ssh.PublicKey{e.key.PublicKey()}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, second.Close()) })
	_, err = second.Listen(addr.String())
	require.NoError(t, err)
	require.NoError(t, echo("after"))
	require.Equal(t, int32(2), e.dials.Load(), "one dial per server")
}

func TestExec_Unreachable(t *testing.T) {
	e := newEnv(t, nil)
	ep := e.ep
	ep.Port = closedPort(t)
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, agentlab.ExecRequest{Shell: "true"})
	require.ErrorIs(t, err, agentlab.ErrUnreachable)
}

func TestExec_AfterClose(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, e.tr.Close())
	_, err := e.tr.Exec(context.Background(), e.ep, agentlab.ExecRequest{Shell: "true"})
	require.ErrorIs(t, err, agentlab.ErrClosed)
}

func TestQuote_RoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		words := rapid.SliceOfN(rapid.StringMatching(`[^\x00]*`), 1, 4).Draw(t, "words")
		script := `for a in ` + sshx.QuoteArgv(words) + `; do printf '%s\0' "$a"; done`
		out, err := exec.Command("sh", "-c", script).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		require.Equal(t, words, got)
	})
}

func TestShell_PTY(t *testing.T) {
	e := newEnv(t, nil)
	var out syncBuffer
	resize := make(chan sshx.WindowSize, 1)
	resize <- sshx.WindowSize{Rows: 33, Cols: 99}
	stdinR, stdinW := io.Pipe()
	go func() {
		time.Sleep(100 * time.Millisecond) // let the resize land first
		_, _ = io.WriteString(stdinW, "echo tty-$TERM-$(stty size | tr ' ' x)\nexit 3\n")
	}()
	t.Cleanup(func() { stdinW.Close() })
	code, err := e.tr.Shell(ctxTimeout(t, 10*time.Second), e.ep, sshx.ShellOptions{
		Stdin: stdinR, Stdout: &out, Resize: resize, Size: sshx.WindowSize{Rows: 20, Cols: 70},
	})
	require.NoError(t, err)
	require.Equal(t, 3, code)
	require.Contains(t, out.String(), "tty-xterm-256color-33x99")
}
