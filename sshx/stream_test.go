package sshx_test

import (
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

// newShellEnv is newEnv with a guest whose commands run through the
// given shell (sshtest runs `shell -c command`), with extra environment.
func newShellEnv(t *testing.T, shell string, extraEnv []string, mod func(*sshx.Config)) *env {
	t.Helper()
	e := &env{key: newSigner(t)}
	e.srv = sshtest.Start(t, sshtest.Config{
		AuthorizedKeys: []ssh.PublicKey{e.key.PublicKey()}, Shell: shell, Env: extraEnv,
	})
	cfg := sshx.Config{Signer: e.key, Dial: e.dial, KillGrace: 300 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	e.tr = sshx.New(cfg)
	t.Cleanup(func() { require.NoError(t, e.tr.Close()) })
	e.ep = endpointFor(e.srv, 1)
	return e
}

// loggingShell writes a shell that appends each command to a log file
// and then runs it with real, and returns the shell's path and the log's.
func loggingShell(t *testing.T, real string) (shell, log string) {
	t.Helper()
	dir := t.TempDir()
	shell, log = filepath.Join(dir, "logsh"), filepath.Join(dir, "commands.log")
	script := "#!/bin/sh\nprintf '%s\\n' \"$2\" >> " + sshx.Quote(log) + "\nexec " + real + ` "$@"` + "\n"
	require.NoError(t, os.WriteFile(shell, []byte(script), 0o755))
	return shell, log
}

// randomFile writes n random bytes to a new file under dir.
func randomFile(t *testing.T, dir, name string, n int, perm fs.FileMode) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, perm))
	require.NoError(t, os.Chmod(p, perm))
	return p, b
}

// requireNoTemps fails when dir holds a transfer's temporary file.
func requireNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), ".agentlab-"), "temp file %s left", e.Name())
	}
}

func requireContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, string(b))
}

// TestStream_OddNames round-trips single files whose names need quoting,
// under dash and bash, and checks that both directions went through the
// shell (the exec stream), not SFTP.
func TestStream_OddNames(t *testing.T) {
	names := []string{
		"with space.txt", "it's.txt", `dq"uote.txt`, "-dash.txt", "--", "$(touch pwned)",
		"back`touch pwned`tick", "new\nline", "*", "semi;colon&amp", "~tilde",
		"sub dir/-x/it's 'quoted'.txt",
	}
	for _, real := range []string{"/bin/sh", "/bin/bash"} {
		t.Run(filepath.Base(real), func(t *testing.T) {
			if _, err := os.Stat(real); err != nil {
				t.Skip(real, " not installed")
			}
			shell, log := loggingShell(t, real)
			e := newShellEnv(t, shell, nil, nil)
			ctx := ctxTimeout(t, 30*time.Second)
			local := t.TempDir()
			for i, name := range names {
				src, want := randomFile(t, local, "src", 1000+i, 0o640)
				require.NoError(t, e.tr.Upload(ctx, e.ep, src, name, nil), name)
				guest := filepath.Join(e.srv.Dir(), name)
				requireContent(t, guest, string(want))
				fi, err := os.Stat(guest)
				require.NoError(t, err)
				require.Equal(t, fs.FileMode(0o640), fi.Mode().Perm(), name)
				requireNoTemps(t, filepath.Dir(guest))

				back := filepath.Join(local, strings.ReplaceAll(name, "/", "_"))
				require.NoError(t, e.tr.Download(ctx, e.ep, name, back, nil), name)
				requireContent(t, back, string(want))
				requireNoTemps(t, local)
			}
			_, err := os.Stat(filepath.Join(e.srv.Dir(), "pwned"))
			require.ErrorIs(t, err, fs.ErrNotExist, "a name was run as a command")
			cmds, err := os.ReadFile(log)
			require.NoError(t, err)
			require.Equal(t, 2*len(names), strings.Count(string(cmds), "echo agentlab-sshx-stream"))
		})
	}
}

func TestStream_AbsolutePath(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	src, want := randomFile(t, t.TempDir(), "f", 4096, 0o600)
	dst := filepath.Join(e.srv.Dir(), "abs dir", "f.bin")
	require.NoError(t, e.tr.Upload(ctx, e.ep, src, dst, nil))
	requireContent(t, dst, string(want))
	back := filepath.Join(t.TempDir(), "back")
	require.NoError(t, e.tr.Download(ctx, e.ep, dst, back, nil))
	requireContent(t, back, string(want))
}

// TestUpload_ReplacesDestination: the new file is renamed into place, so
// another link to the old file and a symlink's target are not written.
func TestUpload_ReplacesDestination(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	guest := e.srv.Dir()
	require.NoError(t, os.WriteFile(filepath.Join(guest, "old"), []byte("old"), 0o644))
	require.NoError(t, os.Link(filepath.Join(guest, "old"), filepath.Join(guest, "hard")))
	require.NoError(t, os.WriteFile(filepath.Join(guest, "target"), []byte("target"), 0o644))
	require.NoError(t, os.Symlink("target", filepath.Join(guest, "soft")))
	src, want := randomFile(t, t.TempDir(), "f", 100, 0o644)
	for _, dst := range []string{"hard", "soft"} {
		require.NoError(t, e.tr.Upload(ctx, e.ep, src, dst, nil))
		requireContent(t, filepath.Join(guest, dst), string(want))
	}
	requireContent(t, filepath.Join(guest, "old"), "old")
	requireContent(t, filepath.Join(guest, "target"), "target")
	fi, err := os.Lstat(filepath.Join(guest, "soft"))
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular())
}

func TestUpload_DirectoryAtDestinationRefused(t *testing.T) {
	e := newEnv(t, nil)
	dir := filepath.Join(e.srv.Dir(), "d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	src, _ := randomFile(t, t.TempDir(), "f", 10, 0o644)
	err := e.tr.Upload(ctxTimeout(t, 10*time.Second), e.ep, src, "d", nil)
	require.ErrorContains(t, err, "is a directory")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// TestUpload_SizeMismatch sends a file whose content is longer than its
// stat size (a /proc file reports 0): the guest's check refuses it and the
// destination keeps its old content.
func TestUpload_SizeMismatch(t *testing.T) {
	src := "/proc/self/status"
	if fi, err := os.Stat(src); err != nil || fi.Size() != 0 {
		t.Skip("no /proc file with a zero size")
	}
	e := newEnv(t, nil)
	dst := filepath.Join(e.srv.Dir(), "dst")
	require.NoError(t, os.WriteFile(dst, []byte("old"), 0o644))
	err := e.tr.Upload(ctxTimeout(t, 10*time.Second), e.ep, src, "dst", nil)
	require.ErrorIs(t, err, sshx.ErrSizeMismatch)
	requireContent(t, dst, "old")
	requireNoTemps(t, e.srv.Dir())
}

// TestDownload_SizeMismatch fetches a guest file whose content differs
// from its stat size: the download fails and the local file is untouched.
func TestDownload_SizeMismatch(t *testing.T) {
	src := "/proc/version"
	if fi, err := os.Stat(src); err != nil || fi.Size() != 0 {
		t.Skip("no /proc file with a zero size")
	}
	e := newEnv(t, nil)
	dir := t.TempDir()
	dst := filepath.Join(dir, "dst")
	require.NoError(t, os.WriteFile(dst, []byte("old"), 0o644))
	err := e.tr.Download(ctxTimeout(t, 10*time.Second), e.ep, src, dst, nil)
	require.ErrorIs(t, err, sshx.ErrSizeMismatch)
	requireContent(t, dst, "old")
	requireNoTemps(t, dir)
}

// cancelAfter returns transfer options that cancel ctx once n bytes moved.
func cancelAfter(t *testing.T, n int64) (context.Context, *agentlab.TransferOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, &agentlab.TransferOptions{Progress: func(_ string, done, _ int64) {
		if done >= n {
			cancel()
		}
	}}
}

// TestStream_CancelledMidway: cancelling during a single-file transfer
// fails with context.Canceled and leaves the destination as it was, with
// no temporary file (the guest script removes its own on SIGTERM or EOF).
func TestStream_CancelledMidway(t *testing.T) {
	e := newEnv(t, func(c *sshx.Config) { c.KillGrace = 10 * time.Second })
	local := t.TempDir()
	src, _ := randomFile(t, local, "big", 32<<20, 0o644)
	guestDst := filepath.Join(e.srv.Dir(), "dst")
	require.NoError(t, os.WriteFile(guestDst, []byte("old"), 0o644))

	ctx, opts := cancelAfter(t, 1<<20)
	err := e.tr.Upload(ctx, e.ep, src, "dst", opts)
	require.ErrorIs(t, err, context.Canceled)
	requireContent(t, guestDst, "old")
	requireNoTemps(t, e.srv.Dir())

	require.NoError(t, os.Link(src, filepath.Join(e.srv.Dir(), "big")))
	dst := filepath.Join(local, "dst")
	require.NoError(t, os.WriteFile(dst, []byte("old"), 0o644))
	ctx, opts = cancelAfter(t, 1<<20)
	err = e.tr.Download(ctx, e.ep, "big", dst, opts)
	require.ErrorIs(t, err, context.Canceled)
	requireContent(t, dst, "old")
	requireNoTemps(t, local)
}

// TestStream_ProgressTotals: each direction reports the remote path as
// given, starts at 0, never goes back and ends at the size.
func TestStream_ProgressTotals(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 20*time.Second)
	size := int64(3<<20 + 17)
	src, _ := randomFile(t, t.TempDir(), "f", int(size), 0o644)
	for _, dir := range []string{"upload", "download"} {
		t.Run(dir, func(t *testing.T) {
			var mu sync.Mutex
			var calls [][2]int64
			paths := map[string]bool{}
			opts := &agentlab.TransferOptions{Progress: func(p string, done, total int64) {
				mu.Lock()
				defer mu.Unlock()
				paths[p] = true
				calls = append(calls, [2]int64{done, total})
			}}
			if dir == "upload" {
				require.NoError(t, e.tr.Upload(ctx, e.ep, src, "p dir/f.bin", opts))
			} else {
				back := filepath.Join(t.TempDir(), "back")
				require.NoError(t, e.tr.Download(ctx, e.ep, "p dir/f.bin", back, opts))
			}
			require.Equal(t, map[string]bool{"p dir/f.bin": true}, paths)
			require.Greater(t, len(calls), 2)
			require.Equal(t, [2]int64{0, size}, calls[0])
			require.Equal(t, [2]int64{size, size}, calls[len(calls)-1])
			for i := 1; i < len(calls); i++ {
				require.GreaterOrEqual(t, calls[i][0], calls[i-1][0])
				require.Equal(t, size, calls[i][1])
			}
		})
	}
}

// TestDownload_SingleFileLocalSymlinkRefused: a symlink at the local
// destination of a single-file download is not written through nor
// replaced.
func TestDownload_SingleFileLocalSymlinkRefused(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, os.WriteFile(filepath.Join(e.srv.Dir(), "f.txt"), []byte("payload"), 0o644))
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("original"), 0o600))
	dir := t.TempDir()
	dst := filepath.Join(dir, "f.txt")
	require.NoError(t, os.Symlink(victim, dst))
	err := e.tr.Download(ctxTimeout(t, 10*time.Second), e.ep, "f.txt", dst, nil)
	require.ErrorIs(t, err, sshx.ErrUnsafePath)
	requireContent(t, victim, "original")
	fi, err := os.Lstat(dst)
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&fs.ModeSymlink)
	requireNoTemps(t, dir)
}

// TestDownload_RemoteSymlinkFollowed: a guest symlink given as the path is
// followed, and the file's mode (not the link's) is kept.
func TestDownload_RemoteSymlinkFollowed(t *testing.T) {
	e := newEnv(t, nil)
	target := filepath.Join(e.srv.Dir(), "real.sh")
	require.NoError(t, os.WriteFile(target, []byte("#!/bin/sh\n"), 0o750))
	require.NoError(t, os.Chmod(target, 0o750))
	require.NoError(t, os.Symlink("real.sh", filepath.Join(e.srv.Dir(), "link")))
	dst := filepath.Join(t.TempDir(), "got")
	require.NoError(t, e.tr.Download(ctxTimeout(t, 10*time.Second), e.ep, "link", dst, nil))
	requireContent(t, dst, "#!/bin/sh\n")
	fi, err := os.Lstat(dst)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o750), fi.Mode())
}

// TestStream_FallbackWithoutShell: on an account whose login shell runs no
// commands (prints a notice, or stays silent and fails), single files
// still move, over SFTP.
func TestStream_FallbackWithoutShell(t *testing.T) {
	shells := map[string]string{
		"nologin": "#!/bin/sh\necho 'This account is currently not available.'\nexit 1\n",
		"false":   "#!/bin/sh\nexit 1\n",
	}
	for name, script := range shells {
		t.Run(name, func(t *testing.T) {
			shell := filepath.Join(t.TempDir(), name)
			require.NoError(t, os.WriteFile(shell, []byte(script), 0o755))
			e := newShellEnv(t, shell, nil, nil)
			ctx := ctxTimeout(t, 10*time.Second)
			src, want := randomFile(t, t.TempDir(), "f", 70000, 0o600)
			require.NoError(t, e.tr.Upload(ctx, e.ep, src, "a/b.bin", nil))
			requireContent(t, filepath.Join(e.srv.Dir(), "a/b.bin"), string(want))
			back := filepath.Join(t.TempDir(), "back")
			require.NoError(t, e.tr.Download(ctx, e.ep, "a/b.bin", back, nil))
			requireContent(t, back, string(want))
		})
	}
}

// TestUpload_MkdirFailureReported: a parent that cannot be created fails
// with the guest's message instead of falling back.
func TestUpload_MkdirFailureReported(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, os.WriteFile(filepath.Join(e.srv.Dir(), "file"), nil, 0o644))
	src, _ := randomFile(t, t.TempDir(), "f", 10, 0o644)
	err := e.tr.Upload(ctxTimeout(t, 10*time.Second), e.ep, src, "file/sub/x", nil)
	require.ErrorContains(t, err, "remote command failed")
	require.ErrorContains(t, err, "mkdir")
}
