package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// transferSize is the file moved per iteration of BenchmarkTransfer.
const transferSize = 256 << 20

// BenchmarkTransfer moves 256 MiB to and from an sshtest server: through
// sshx's Upload and Download (a single regular file streams through an exec
// session on the pooled connection, with a ready line, a temporary file and
// a size check around it), and by piping
// the bytes through one session of a plain x/crypto/ssh connection
// (`cat > file` fed from stdin, `cat file` read from stdout), the physical
// limit of one SSH channel. Both use the same cipher negotiation and the
// same server; throughput is in MB/s.
func BenchmarkTransfer(b *testing.B) {
	w := newSSHWorld(b)
	local := filepath.Join(b.TempDir(), "payload.bin")
	writeRandomFile(b, local, transferSize)
	// Downloads read a copy placed in the server's directory beforehand.
	check(b, os.Link(local, filepath.Join(w.srv.Dir(), "src.bin")))
	back := filepath.Join(b.TempDir(), "back.bin")
	ctx := context.Background()
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"SDK/upload", func() error { return w.tr.Upload(ctx, w.ep, local, "sdk.bin", nil) }},
		{"Pipe/upload", func() error { return w.pipeUp(local, "pipe.bin") }},
		{"SDK/download", func() error { return w.tr.Download(ctx, w.ep, "src.bin", back, nil) }},
		{"Pipe/download", func() error { return w.pipeDown("src.bin", back) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(transferSize)
			for b.Loop() {
				if err := c.f(); err != nil {
					b.Fatal(err)
				}
			}
			checkSize(b, back, c.name)
		})
	}
}

// pipeUp streams the local file into `cat > remote` in one session.
func (w *sshWorld) pipeUp(local, remote string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	sess, err := w.raw.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin = f
	return sess.Run("cat > " + remote)
}

// pipeDown streams `cat remote` into the local file.
func (w *sshWorld) pipeDown(remote, local string) error {
	f, err := os.Create(local)
	if err != nil {
		return err
	}
	defer f.Close()
	sess, err := w.raw.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdout = f
	if err := sess.Run("cat " + remote); err != nil {
		return err
	}
	return f.Close()
}

// writeRandomFile writes size random bytes to path.
func writeRandomFile(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	check(tb, err)
	defer f.Close()
	_, err = io.CopyN(f, rand.Reader, size)
	check(tb, err)
	check(tb, f.Close())
}

// checkSize fails b when a download left a file of the wrong size.
func checkSize(b *testing.B, path, name string) {
	b.Helper()
	fi, err := os.Stat(path)
	if err == nil && fi.Size() != transferSize {
		err = fmt.Errorf("%s: %s has %d bytes, want %d", name, path, fi.Size(), transferSize)
	}
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
}
