package sshx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
)

// writeTree creates files (path -> content) with modes under root.
func writeTree(t *testing.T, root string, files map[string]string, modes map[string]fs.FileMode) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	for p, m := range modes {
		require.NoError(t, os.MkdirAll(filepath.Join(root, p), 0o755))
		require.NoError(t, os.Chmod(filepath.Join(root, p), m))
	}
}

// readTree maps every file and directory under root to "mode content".
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		content := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			content = string(b)
		}
		got[rel] = fi.Mode().String() + " " + content
		return nil
	})
	require.NoError(t, err)
	return got
}

func TestTransfer_TreeRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	big := make([]byte, 3<<20)
	_, _ = rand.Read(big)
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, map[string]string{
		"top.txt": "top", "a/b/c.txt": "deep", "a/run.sh": "#!/bin/sh\n", "big.bin": string(big),
	}, map[string]fs.FileMode{"a/empty": 0o750})
	require.NoError(t, os.Chmod(filepath.Join(src, "a/run.sh"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(src, "top.txt"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(src, "a/b"), 0o700))

	var mu sync.Mutex
	final := map[string][2]int64{}
	opts := &agentlab.TransferOptions{Progress: func(p string, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		final[p] = [2]int64{done, total}
	}}
	ctx := ctxTimeout(t, 30*time.Second)
	require.NoError(t, e.tr.Upload(ctx, e.ep, src, "up/tree", opts))
	require.Equal(t, readTree(t, src), readTree(t, filepath.Join(e.srv.Dir(), "up/tree")))
	require.Equal(t, [2]int64{3 << 20, 3 << 20}, final["up/tree/big.bin"])

	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, e.tr.Download(ctx, e.ep, "up/tree", dst, opts))
	require.Equal(t, readTree(t, src), readTree(t, dst))
	require.Equal(t, [2]int64{3 << 20, 3 << 20}, final["up/tree/big.bin"])
}

func TestTransfer_SingleFile(t *testing.T) {
	e := newEnv(t, nil)
	src := filepath.Join(t.TempDir(), "f.txt")
	require.NoError(t, os.WriteFile(src, []byte("one file"), 0o640))
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, e.tr.Upload(ctx, e.ep, src, "f.txt", nil))
	dst := filepath.Join(t.TempDir(), "back.txt")
	require.NoError(t, e.tr.Download(ctx, e.ep, "f.txt", dst, nil))
	b, err := os.ReadFile(dst)
	require.NoError(t, err)
	require.Equal(t, "one file", string(b))
	fi, err := os.Stat(dst)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
}

func TestUpload_SingleFileCreatesParents(t *testing.T) {
	e := newEnv(t, nil)
	src := filepath.Join(t.TempDir(), "f.txt")
	require.NoError(t, os.WriteFile(src, []byte("nested"), 0o600))
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, e.tr.Upload(ctx, e.ep, src, "new/deeper/f.txt", nil))
	b, err := os.ReadFile(filepath.Join(e.srv.Dir(), "new/deeper/f.txt"))
	require.NoError(t, err)
	require.Equal(t, "nested", string(b))
}

func TestTransfer_Cancelled(t *testing.T) {
	e := newEnv(t, nil)
	src := filepath.Join(t.TempDir(), "f.txt")
	require.NoError(t, os.WriteFile(src, bytes.Repeat([]byte("x"), 1<<20), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	opts := &agentlab.TransferOptions{Progress: func(string, int64, int64) { cancel() }}
	err := e.tr.Upload(ctx, e.ep, src, "f.txt", opts)
	require.ErrorIs(t, err, context.Canceled)
}

// TestDownload_GuestSymlinksNotFollowed: links in the guest tree that point
// outside it are neither followed nor recreated.
func TestDownload_GuestSymlinksNotFollowed(t *testing.T) {
	e := newEnv(t, nil)
	guestTree := filepath.Join(e.srv.Dir(), "tree")
	writeTree(t, guestTree, map[string]string{"ok.txt": "fine", "sub/also.txt": "fine too"}, nil)
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("host secret"), 0o600))
	for name, target := range map[string]string{
		"passwd": "/etc/passwd", "secret": secret, "up": "../..", "sub/outside": "../../..",
	} {
		require.NoError(t, os.Symlink(target, filepath.Join(guestTree, name)))
	}
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, e.tr.Download(ctxTimeout(t, 10*time.Second), e.ep, "tree", dst, nil))
	got := readTree(t, dst)
	require.Len(t, got, 4, "only ., ok.txt, sub, sub/also.txt: %v", got)
	require.Contains(t, got, "ok.txt")
	require.Contains(t, got, filepath.Join("sub", "also.txt"))
}

// TestDownload_LocalSymlinkRefused: a symlink planted in the destination
// is not written through.
func TestDownload_LocalSymlinkRefused(t *testing.T) {
	e := newEnv(t, nil)
	writeTree(t, filepath.Join(e.srv.Dir(), "tree"), map[string]string{"f.txt": "payload"}, nil)
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("original"), 0o600))
	dst := t.TempDir()
	require.NoError(t, os.Symlink(victim, filepath.Join(dst, "f.txt")))
	err := e.tr.Download(ctxTimeout(t, 10*time.Second), e.ep, "tree", dst, nil)
	require.ErrorIs(t, err, sshx.ErrUnsafePath)
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "original", string(b))
}

// TestDownload_MaliciousNames talks to an SFTP server that lists names
// crafted to escape the destination. Whatever the client library and sshx
// make of them (refuse, or reduce to a last element), nothing may land
// outside dst.
func TestDownload_MaliciousNames(t *testing.T) {
	names := []string{"../escape.txt", "/tmp/abs.txt", "a/../../b.txt", "", "..", "a/..",
		"../../../../../../tmp/x"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			key := newSigner(t)
			ep := startEvilSFTP(t, key.PublicKey(), name)
			tr := sshx.New(sshx.Config{Signer: key})
			t.Cleanup(func() { tr.Close() })
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			err := tr.Download(ctxTimeout(t, 10*time.Second), ep, "/evil", dst, nil)
			if err != nil {
				require.ErrorIs(t, err, sshx.ErrUnsafePath)
			}
			entries, err := os.ReadDir(parent)
			require.NoError(t, err)
			require.Len(t, entries, 1, "nothing written beside dst")
			for rel, v := range readTree(t, dst) {
				require.True(t, rel == "." || filepath.Base(rel) == rel, "%s: %s", rel, v)
			}
		})
	}
}

// startEvilSFTP serves an SFTP tree whose directory "/evil" lists one
// regular file called name.
func startEvilSFTP(t *testing.T, clientKey ssh.PublicKey, name string) agentlab.Endpoint {
	t.Helper()
	hostKey := newSigner(t)
	conf := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), clientKey.Marshal()) {
			return nil, nil
		}
		return nil, os.ErrPermission
	}}
	conf.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	h := evilHandlers{name: name}
	handlers := sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serveEvil(c, conf, handlers) }()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return agentlab.Endpoint{VMID: 99, Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
		User: "x", HostKey: sshx.FormatKey(hostKey.PublicKey())}
}

func serveEvil(c net.Conn, conf *ssh.ServerConfig, h sftp.Handlers) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for r := range creqs {
				ok := r.Type == "subsystem"
				_ = r.Reply(ok, nil)
				if ok {
					srv := sftp.NewRequestServer(ch, h)
					_ = srv.Serve()
					srv.Close()
				}
			}
		}()
	}
}

// evilHandlers serves "/evil" as a directory holding one file named name.
type evilHandlers struct{ name string }

func (h evilHandlers) Fileread(*sftp.Request) (io.ReaderAt, error) {
	return bytes.NewReader([]byte("pwned")), nil
}

func (h evilHandlers) Filewrite(*sftp.Request) (io.WriterAt, error) { return nil, os.ErrPermission }

func (h evilHandlers) Filecmd(*sftp.Request) error { return os.ErrPermission }

func (h evilHandlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method == "List" {
		return listerAt{fakeInfo{name: h.name, mode: 0o644}}, nil
	}
	return listerAt{fakeInfo{name: "evil", mode: fs.ModeDir | 0o755}}, nil
}

type listerAt []os.FileInfo

func (l listerAt) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if int(off)+n == len(l) {
		return n, io.EOF
	}
	return n, nil
}

type fakeInfo struct {
	name string
	mode fs.FileMode
}

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return 5 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }
